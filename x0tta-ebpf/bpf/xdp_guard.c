// SPDX-License-Identifier: GPL-2.0-only
//
// x0tta6bl4's XDP guard: per-source packet and byte counters, a token-bucket rate limit per
// source, and a block list. Userspace (x0tta-ebpf's `XdpGuard`) reads and updates every map
// while the program runs; the layouts below are mirrored there and must not drift.
//
// Built by x0tta-ebpf's build.rs: clang -target bpf -O2 -g.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NS_PER_TOKEN 1000000000ULL
// The refill is computed over at most this long, so that `elapsed * pps` stays far below 2^64
// (userspace refuses pps above 10^8 and bursts above 10^7).
#define MAX_REFILL_NS 10000000000ULL

// A source address: family 4 or 6, then the address in network order (IPv4 in the first 4
// bytes, the rest zero).
struct src_key {
	__u32 family;
	__u8 addr[16];
};

// What one source sent. `tokens` is the bucket's fill in billionths of a packet.
struct src_stats {
	__u64 packets;
	__u64 bytes;
	__u64 rate_dropped;
	__u64 blocked_dropped;
	__u64 tokens;
	__u64 last_ns;
};

// A token bucket: packets per second (0 = no limit) and burst, in packets.
struct limit {
	__u64 pps;
	__u64 burst;
};

// Totals, one per CPU: userspace sums them.
struct totals {
	__u64 passed;
	__u64 passed_bytes;
	__u64 rate_dropped;
	__u64 blocked_dropped;
	__u64 not_ip;
	__u64 table_full;
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct src_key);
	__type(value, struct src_stats);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct src_key);
	__type(value, struct limit);
} limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct limit);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct src_key);
	__type(value, __u64);
} blocked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct totals);
} totals SEC(".maps");

// Whether the bucket of `s` has a token left under `lim`; takes it if so.
static __always_inline int take_token(struct src_stats *s, const struct limit *lim, __u64 now)
{
	__u64 elapsed = now > s->last_ns ? now - s->last_ns : 0;
	if (elapsed > MAX_REFILL_NS)
		elapsed = MAX_REFILL_NS;
	__u64 cap = lim->burst * NS_PER_TOKEN;
	__u64 tokens = s->tokens + elapsed * lim->pps;
	if (tokens > cap)
		tokens = cap;
	s->last_ns = now;
	if (tokens < NS_PER_TOKEN) {
		s->tokens = tokens;
		return 0;
	}
	s->tokens = tokens - NS_PER_TOKEN;
	return 1;
}

SEC("xdp")
int x0tta_guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	struct totals *t = bpf_map_lookup_elem(&totals, &zero);
	if (!t)
		return XDP_PASS;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;

	// Up to two VLAN tags (802.1Q, 802.1ad).
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *v = l3;
		if ((void *)(v + 1) > end)
			return XDP_PASS;
		proto = v->proto;
		l3 = v + 1;
	}

	struct src_key key = {};
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		key.family = 4;
		__builtin_memcpy(key.addr, &ip->saddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		key.family = 6;
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
	} else {
		t->not_ip++;
		return XDP_PASS;
	}

	__u64 len = end - data;
	__u64 now = bpf_ktime_get_ns();

	const struct limit *lim = bpf_map_lookup_elem(&limits, &key);
	if (!lim)
		lim = bpf_map_lookup_elem(&config, &zero);

	struct src_stats *s = bpf_map_lookup_elem(&sources, &key);
	if (!s) {
		struct src_stats fresh = {};
		fresh.last_ns = now;
		if (lim)
			fresh.tokens = lim->burst * NS_PER_TOKEN;
		bpf_map_update_elem(&sources, &key, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&sources, &key);
	}
	if (s) {
		__sync_fetch_and_add(&s->packets, 1);
		__sync_fetch_and_add(&s->bytes, len);
	} else {
		t->table_full++;
	}

	if (bpf_map_lookup_elem(&blocked, &key)) {
		if (s)
			__sync_fetch_and_add(&s->blocked_dropped, 1);
		t->blocked_dropped++;
		return XDP_DROP;
	}

	if (s && lim && lim->pps && !take_token(s, lim, now)) {
		__sync_fetch_and_add(&s->rate_dropped, 1);
		t->rate_dropped++;
		return XDP_DROP;
	}

	t->passed++;
	t->passed_bytes += len;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
