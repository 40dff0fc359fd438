//! In-memory implementations of [`Transport`](crate::Transport) and
//! [`KnowledgeStore`](crate::KnowledgeStore), for tests, examples and single-process meshes.
//!
//! They behave like the real thing within one process — gossip reaches subscribers through
//! bounded queues, requests are answered by served handlers, crashes and partitions produce
//! mesh events, incidents are content-addressed and searchable — but nothing survives the
//! process: [`MemoryKnowledge`] is **not durable**.

mod knowledge;
mod transport;

pub use knowledge::MemoryKnowledge;
pub use transport::{MemoryNetwork, MemoryTransport, NetworkConfig};
