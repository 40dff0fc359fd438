//! # x0tta-mesh
//!
//! How x0tta6bl4 nodes find and watch each other (DESIGN §6):
//!
//! - [`p2p`] (feature `libp2p`, default): [`P2pTransport`](p2p::P2pTransport), x0tta-core's
//!   [`Transport`](x0tta_core::Transport) over libp2p — TCP with the post-quantum
//!   `/x0tta/pq/1.0.0` security upgrade (x0tta-pqc) and yamux; identify, Kademlia, mDNS
//!   (switchable), gossipsub on the `x0tta/*` topics, request-response `/x0tta/sync/1` and
//!   `/x0tta/block/1`, connection limits, isolation by block list, redial with backoff and
//!   discovery of replacements below `min_neighbours`, a `nodes.json` bootstrap list.
//! - [`swim`]: SWIM failure detection, sans I/O — probes, indirect probes through k peers,
//!   suspicion, down verdicts, partitions; RTT, loss and clock offset per neighbour. Timings
//!   come from the policy's `mesh` section.
//! - [`sim`] (feature `sim`, off by default): [`SimNetwork`](sim::SimNetwork), an in-memory
//!   mesh of [`SimTransport`](sim::SimTransport)s — each a full `Transport` running the real
//!   SWIM detector in its own task — with latency, jitter, loss, partitions, crashes, restarts
//!   and clock skew, driven by tokio's clock so thousands of nodes run deterministically from a
//!   seed under `#[tokio::test(start_paused = true)]`.
//! - [`yggdrasil`]: reads a Yggdrasil router's admin socket as a
//!   [`Sensor`](x0tta_core::Sensor) and gives the address libp2p listens on to run over it.
//!
//! Not here yet: QUIC and rotation of long-lived connections on the rekey interval.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use x0tta_core::{Transport, topics};
//! use x0tta_mesh::p2p::{P2pConfig, P2pTransport};
//! use x0tta_pqc::NodeIdentity;
//!
//! let me = NodeIdentity::load_or_generate("keys", &"spiffe://mesh.example/node/a".parse()?)?;
//! let mesh = P2pTransport::start(&me, P2pConfig::default()).await?;
//! let mut events = mesh.events(); // PeerUp / PeerSuspect / PeerDown / Partitioned / Healed
//! mesh.publish(topics::INCIDENTS, b"signed envelope".to_vec()).await?;
//! # let _ = events.next().await;
//! # Ok(()) }
//! ```

#[cfg(feature = "libp2p")]
pub mod p2p;
#[cfg(feature = "sim")]
pub mod sim;
pub mod swim;
pub mod yggdrasil;
