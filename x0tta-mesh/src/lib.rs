//! # x0tta-mesh
//!
//! **Not implemented yet.** This crate will hold the libp2p [`Transport`](x0tta_core::Transport)
//! of x0tta6bl4 nodes (DESIGN §6): TCP and QUIC with the `/x0tta/pq/1.0.0` security upgrade,
//! yamux, identify, ping, Kademlia, mDNS, gossipsub on the `x0tta/*` topics, request-response
//! `/x0tta/sync/1` and `/x0tta/block/1`, SWIM-style failure detection, mesh healing, clock
//! offsets, the Yggdrasil adapter, and the `sim` feature (a simulated mesh for thousands of
//! nodes on tokio's paused clock).
//!
//! Until it lands, nodes use [`x0tta_core::memory::MemoryNetwork`], an in-process mesh.
