//! BTRFS fixture (in progress).
