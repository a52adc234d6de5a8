//! zib's pipelines: the library a program embeds to "back up dataset X to bucket Y".
//!
//! Wires the snapshot source, the crypto layer, the storage backend and the planner
//! together. What is here:
//!
//! - the on-bucket format above the crypto layer: opaque [`ids`], the key [`layout`]
//!   (the one place keys are spelled), object [`metadata`] with sealed [`records`];
//! - [`repository`]: init (keyring, its archived copy, README; create-if-absent) and
//!   open (wrong passphrase is the first error);
//! - [`access`]: the step-by-step access check (each refusal names the IAM permission
//!   to add) and the bucket lifecycle rule that aborts abandoned uploads;
//! - [`volumes`]: a send stream cut into encrypted volumes uploaded as multipart uploads
//!   with bounded memory, and read back verified;
//! - [`backup`]: the backup pipeline (planner decision, snapshot, send, upload, manifest
//!   commit, base protection);
//! - [`prune`]: after a commit, the base protection moves to the new snapshot and the
//!   superseded snapshots zib created are destroyed;
//! - [`catalog`]: the catalog from LIST and HEAD requests alone, and the clean-up of
//!   leftovers older than a threshold (never another host's live backup);
//! - [`journal`] and [`lock`]: crash-safe resume — the local journal of the backup in
//!   progress and the per-(repository, dataset) lock that keeps two runs apart;
//! - [`restore`]: receiving a chain from readable objects.
//!
//! Not yet here: consolidation execution, and the scheduled multi-month restore from
//! Deep Archive.
//!
//! This crate never prints, prompts or parses flags: that is the CLI's job. Time comes
//! from an injected [`clock::Clock`], progress goes to an injected [`progress::Progress`].

pub mod access;
pub mod backup;
pub mod catalog;
pub mod clock;
pub mod ids;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod metadata;
pub mod progress;
pub mod prune;
pub mod records;
pub mod repository;
pub mod restore;
pub mod volumes;

mod error;
pub use error::{Error, Result};
