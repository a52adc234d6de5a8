//! zib format v1 cryptography.
//!
//! Owns the keyring (a random data key wrapped under a passphrase-derived key), the
//! streaming authenticated encryption of volumes, and sealed metadata records. The byte
//! layouts are normative and specified in `docs/FORMAT.md`.
//!
//! This crate does no I/O of its own beyond the byte streams it is handed.
