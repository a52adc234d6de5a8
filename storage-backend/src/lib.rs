//! Object storage with cold storage in the contract.
//!
//! The `StorageBackend` trait and its implementations: S3 (Glacier Deep Archive by
//! default), a local directory, and an in-memory backend for tests and simulations,
//! plus decorators (retry, request counting, fault injection) usable on any of them.
//!
//! This crate moves opaque bytes; it knows nothing of zib's formats or encryption.
