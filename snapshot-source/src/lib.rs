//! Snapshot sources: where zib's backups come from and where restores go back to.
//!
//! A [`SnapshotSource`] lists a dataset's snapshots with their stable identities, creates
//! snapshots, produces send streams (full or incremental) and receives them. Two real
//! implementations drive the file systems' own command-line tools with argument vectors
//! (never a shell): ZFS (`zfs`, both OpenZFS 2.x and the older zfs-fuse dialect, probed
//! rather than assumed) and BTRFS (`btrfs`).
//!
//! This crate deliberately knows nothing about encryption, buckets or costs.
