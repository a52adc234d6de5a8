//! zib's pipelines: the library a program embeds to "back up dataset X to bucket Y".
//!
//! Wires the snapshot source, the crypto layer, the storage backend and the planner
//! together: backup, restore, consolidate and verify; the on-bucket layout and the
//! catalog read from the bucket alone; the local resume journal.
//!
//! Status: the building blocks that fix the on-bucket layout are here — opaque ids
//! ([`ids`]), the key layout ([`layout`]), the injected clock ([`clock`]) and progress
//! trait ([`progress`]). The pipelines themselves are not implemented yet.
//!
//! This crate never prints, prompts or parses flags: that is the CLI's job.

pub mod clock;
pub mod ids;
pub mod layout;
pub mod metadata;
pub mod progress;
pub mod records;

mod error;
pub use error::{Error, Result};
pub mod backup;
pub mod catalog;
pub mod repository;
pub mod volumes;
