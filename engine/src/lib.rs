//! zib's pipelines: the library a program embeds to "back up dataset X to bucket Y".
//!
//! Wires the snapshot source, the crypto layer, the storage backend and the planner
//! together: backup, restore, consolidate and verify; the on-bucket layout and the
//! catalog read from the bucket alone; the local resume journal.
//!
//! Status: the pipelines are not implemented yet; this crate currently only ties the
//! workspace together.
