//! Body of the send-stream header fuzz target in `fuzz/` (cargo-fuzz, nightly only), as
//! a plain function so that a stable test (`tests/fuzz_corpus.rs`) runs it over the
//! checked-in corpus. Not part of the API: no stability promise.
//!
//! It takes arbitrary bytes and MUST NOT panic, hang or allocate without bound.

use crate::stream_header::{
    btrfs_begin_needs, parse_btrfs_begin, parse_zfs_begin, BtrfsEndTracker, BTRFS_CMD_HEADER_LEN,
    BTRFS_HEADER_LEN, BTRFS_MAX_COMMAND_LEN, ZFS_BEGIN_LEN,
};

/// The ZFS and BTRFS stream header readers over the same bytes, as a receive reads
/// them: the ZFS begin record; the BTRFS prefix length, first command and end tracker
/// (fed whole and in pieces whose size comes from the first byte). Returns whether
/// either reader accepted the bytes as a stream's start.
pub fn stream_header(data: &[u8]) -> bool {
    let zfs = parse_zfs_begin(data);
    if let Ok(begin) = &zfs {
        assert!(data.len() >= ZFS_BEGIN_LEN);
        assert!(!begin.to_name.contains('\0'), "the name ends at its NUL");
        assert_ne!(begin.from_guid, Some(0), "guid 0 means a full stream");
    }

    // What a receive reads before parsing is bounded, whatever the stream claims.
    let needed = btrfs_begin_needs(data);
    let first = BTRFS_HEADER_LEN + BTRFS_CMD_HEADER_LEN;
    assert!((first..=first + BTRFS_MAX_COMMAND_LEN).contains(&needed));
    let btrfs = parse_btrfs_begin(data);
    if let Ok(begin) = &btrfs {
        assert!(data.len() >= needed);
        // Only the first command is read: what follows it changes nothing.
        assert_eq!(
            parse_btrfs_begin(&data[..needed]).ok().as_ref(),
            Some(begin)
        );
        assert_eq!(begin.uuid.len(), 36);
        if let Some(clone) = &begin.clone_uuid {
            assert_eq!(clone.len(), 36);
        }
    }

    let mut whole = BtrfsEndTracker::default();
    whole.observe(data);
    let step = data.first().map_or(1, |&b| usize::from(b) + 1);
    let mut pieces = BtrfsEndTracker::default();
    for piece in data.chunks(step) {
        pieces.observe(piece);
    }
    assert_eq!(
        whole.ended_cleanly(),
        pieces.ended_cleanly(),
        "how the bytes arrive changes nothing"
    );

    zfs.is_ok() || btrfs.is_ok()
}

/// Seed inputs for the target (`(file name, bytes)`), made as `zfs send` and
/// `btrfs send` lay out their first bytes (`good_*`), and spoiled copies (`fail_*`).
/// `tests/fuzz_corpus.rs` checks each is accepted or refused as its name says, and
/// writes them into `fuzz/corpus/stream_header/` when `ZIB_WRITE_FUZZ_SEEDS=1`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    const ZFS_MAGIC: u64 = 0x2F5B_ACBAC;
    let zfs = |little: bool, from: u64| {
        let mut record = vec![0u8; ZFS_BEGIN_LEN];
        let mut put = |at: usize, value: u64| {
            let bytes = if little {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            record[at..at + 8].copy_from_slice(&bytes);
        };
        put(8, ZFS_MAGIC);
        put(40, 0x1234_5678_9abc_def0);
        put(48, from);
        record[56..72].copy_from_slice(b"tank/photos@zib1");
        // The stream goes on after the begin record.
        record.extend_from_slice(&[0xee; 32]);
        record
    };
    let command = |kind: u16, attributes: &[(u16, &[u8])]| {
        let mut payload = Vec::new();
        for (attribute, value) in attributes {
            payload.extend_from_slice(&attribute.to_le_bytes());
            payload.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
            payload.extend_from_slice(value);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&payload);
        out
    };
    let btrfs = |first: Vec<u8>| {
        let mut stream = b"btrfs-stream\0".to_vec();
        stream.extend_from_slice(&1u32.to_le_bytes());
        stream.extend(first);
        stream.extend(command(15, &[(15, b"file")]));
        stream.extend(command(21, &[]));
        stream
    };
    let subvol = command(1, &[(15, b"home-2026"), (1, &[1; 16]), (2, &[0; 8])]);
    let snapshot = command(2, &[(15, b"home-2027"), (1, &[1; 16]), (20, &[2; 16])]);
    let snapshot_without_parent = command(2, &[(15, b"home-2027"), (1, &[1; 16])]);
    let full_btrfs = btrfs(subvol);
    let mut zfs_not_begin = zfs(true, 0);
    zfs_not_begin[0] = 1;
    vec![
        ("good_zfs_full_le".into(), zfs(true, 0)),
        ("good_zfs_incremental_le".into(), zfs(true, 7)),
        ("good_zfs_incremental_be".into(), zfs(false, 7)),
        (
            "fail_zfs_short".into(),
            zfs(true, 0)[..ZFS_BEGIN_LEN - 1].to_vec(),
        ),
        ("fail_zfs_not_begin".into(), zfs_not_begin),
        ("good_btrfs_full".into(), full_btrfs.clone()),
        ("good_btrfs_incremental".into(), btrfs(snapshot)),
        (
            "fail_btrfs_snapshot_without_parent".into(),
            btrfs(snapshot_without_parent),
        ),
        (
            "fail_btrfs_cut_in_first_command".into(),
            full_btrfs[..BTRFS_HEADER_LEN + BTRFS_CMD_HEADER_LEN + 3].to_vec(),
        ),
        ("fail_empty".into(), Vec::new()),
    ]
}
