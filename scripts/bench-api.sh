#!/usr/bin/env bash
# API latency and throughput on loopback with the MAPE-K loop running (docs/PERFORMANCE.md).
# Needs wrk (apt-get install wrk). Usage: scripts/bench-api.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 2; }
cargo build --release -p node-ref --locked -q
bin="$PWD/target/release/x0tta6bl4"
dir="$(mktemp -d)"
trap 'kill "$node" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" init --config "$dir/node.yaml" --name bench >/dev/null
# A 1 s cycle keeps the loop busy during the runs; free ports.
sed -i 's/cycle: 60s/cycle: 1s/; s#/tcp/7001#/tcp/0#; s/listen: 127.0.0.1:3000/listen: 127.0.0.1:0/' "$dir/node.yaml"
# A knowledge base to search: 10,000 incidents of varied kinds, subjects and notes.
cargo run --release -p node-ref --locked -q --example seed_incidents -- "$dir/data" "${SEED:-10000}"
"$bin" run --config "$dir/node.yaml" 2>/dev/null &
node=$!
for _ in $(seq 100); do [ -f "$dir/data/api.json" ] && break; sleep 0.1; done
addr="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["addr"])' "$dir/data/api.json")"
sleep 3
incidents="$(curl -s "http://$addr/api/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["known_incidents"])')"
echo "node at $addr, $incidents incidents stored, cycle 1 s, wrk -t2 -c16 -d${secs}s"
printf '%-34s %10s %10s %10s %8s\n' route "req/s" "p50" "p99" ratio
base=""
for route in /api/v1/nothing /api/v1/status "/api/v1/incidents/search?q=oom+killed+restart" /api/v1/dashboard /metrics; do
    out="$(wrk -t2 -c16 -d"${secs}s" --latency "http://$addr$route")"
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    [ -z "$base" ] && base="$rps"
    ratio="$(python3 -c "print(f'{$base / $rps:.2f}')")"
    printf '%-34s %10s %10s %10s %8s\n' "$route" "$rps" "$p50" "$p99" "$ratio"
done
echo "ratio: baseline req/s (the 404 route: server, middleware and JSON error only) / route req/s"
