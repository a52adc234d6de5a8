//! Test fixtures for zib's real components and the conformance suites of its traits.
//!
//! Fixtures start what a test needs — a zfs-fuse pool on a sparse file, a BTRFS file
//! system on a loop device, a moto S3 server on a free loopback port — with unique names
//! so tests run in parallel, and clean up when dropped.
//!
//! When the run asked for real components (see [`real`]) and one is missing, the fixture
//! fails the test with a message saying what to install; it never skips silently.

pub mod btrfs;
pub mod data;
pub mod memory_source;
pub mod moto;
pub mod proxy;
pub mod real;
pub mod snapshot_conformance;
pub mod storage_conformance;
pub mod zfs;
