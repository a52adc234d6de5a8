//! Test fixtures for zib's real components and the conformance suites of its traits.
//!
//! Fixtures start what a test needs — a zfs-fuse pool on a sparse file, a BTRFS file
//! system on a loop device, a moto S3 server on a free loopback port — with unique names
//! so tests run in parallel, and clean up when dropped.
//!
//! When the run asked for real components (see [`real`]) and one is missing, the fixture
//! fails the test with a message saying what to install; it never skips silently.
//!
//! The fixtures are the default feature `fixtures`; without it the crate is the
//! conformance suites, the data generators and the in-memory snapshot source, for a
//! backend's own crate to check itself with.

#[cfg(feature = "fixtures")]
pub mod btrfs;
pub mod data;
pub mod memory_source;
#[cfg(feature = "fixtures")]
pub mod moto;
#[cfg(feature = "fixtures")]
pub mod proxy;
pub mod real;
pub mod snapshot_conformance;
pub mod storage_conformance;
#[cfg(feature = "fixtures")]
pub mod tmpfs;
#[cfg(feature = "fixtures")]
pub mod zfs;
