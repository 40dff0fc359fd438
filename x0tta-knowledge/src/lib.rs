//! # x0tta-knowledge
//!
//! **Not implemented yet.** This crate will hold the durable
//! [`KnowledgeStore`](x0tta_core::KnowledgeStore) of x0tta6bl4 nodes (DESIGN §7): incidents,
//! plans and policy versions in redb, content-addressed as DAG-CBOR CIDv1 (computed by
//! [`x0tta_core::ContentId`]), hybrid BM25 + HNSW search, CRDT replication through yrs, and
//! CAR export/import.
//!
//! Until it lands, nodes use [`x0tta_core::memory::MemoryKnowledge`], which is not durable.
