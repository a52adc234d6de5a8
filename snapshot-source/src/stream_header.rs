//! Just enough of the ZFS and BTRFS send stream formats to know, before receiving, what
//! a stream is (full or incremental, from which base, to which snapshot identity), and
//! for BTRFS whether it ended where the sender ended it.
//!
//! Why: an incremental stream whose base is missing must fail with a clear meaning, not
//! a tool's message; and `btrfs receive` takes end of input at a command boundary as a
//! complete stream, so a truncated BTRFS stream would otherwise be accepted.

use crate::error::{Error, Result};

/// Length of a ZFS stream's first record (`dmu_replay_record` holding `drr_begin`).
pub(crate) const ZFS_BEGIN_LEN: usize = 312;
const ZFS_MAGIC: u64 = 0x2F5B_ACBAC;
const ZFS_DRR_BEGIN: u32 = 0;

/// What a ZFS stream's begin record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZfsBegin {
    /// Guid of the snapshot the stream recreates.
    pub(crate) to_guid: u64,
    /// Guid of the incremental base; `None` for a full stream.
    pub(crate) from_guid: Option<u64>,
    /// The sender's snapshot name (`pool/fs@snap`).
    pub(crate) to_name: String,
}

/// Parses the begin record of a ZFS send stream (either byte order).
pub(crate) fn parse_zfs_begin(bytes: &[u8]) -> Result<ZfsBegin> {
    let invalid = |detail: &str| Error::InvalidStream {
        detail: detail.to_owned(),
    };
    if bytes.len() < ZFS_BEGIN_LEN {
        return Err(invalid("shorter than a ZFS stream's begin record"));
    }
    let word = |at: usize| -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&bytes[at..at + 8]);
        out
    };
    let little = u64::from_le_bytes(word(8)) == ZFS_MAGIC;
    let big = u64::from_be_bytes(word(8)) == ZFS_MAGIC;
    if !little && !big {
        return Err(invalid(
            "no ZFS stream magic at the start (is this a ZFS send stream?)",
        ));
    }
    let read = |at: usize| {
        if little {
            u64::from_le_bytes(word(at))
        } else {
            u64::from_be_bytes(word(at))
        }
    };
    let record_type = (read(0) & 0xffff_ffff) as u32;
    let record_type = if little {
        record_type
    } else {
        (read(0) >> 32) as u32
    };
    if record_type != ZFS_DRR_BEGIN {
        return Err(invalid("the first record is not a BEGIN record"));
    }
    let name_bytes = &bytes[56..ZFS_BEGIN_LEN];
    let end = name_bytes
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(name_bytes.len());
    let from = read(48);
    Ok(ZfsBegin {
        to_guid: read(40),
        from_guid: (from != 0).then_some(from),
        to_name: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
    })
}

const BTRFS_MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// Stream header: magic and a little-endian u32 version.
pub(crate) const BTRFS_HEADER_LEN: usize = 17;
/// Command header: payload length u32, command u16, crc32c u32 (all little-endian).
pub(crate) const BTRFS_CMD_HEADER_LEN: usize = 10;
const BTRFS_CMD_SUBVOL: u16 = 1;
const BTRFS_CMD_SNAPSHOT: u16 = 2;
const BTRFS_CMD_END: u16 = 21;
const BTRFS_ATTR_UUID: u16 = 1;
const BTRFS_ATTR_PATH: u16 = 15;
const BTRFS_ATTR_CLONE_UUID: u16 = 20;

/// What a BTRFS stream's first command says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BtrfsBegin {
    /// Name of the subvolume the stream creates (in the receive directory).
    pub(crate) path: String,
    /// Identity of the sent snapshot (its received UUID if it had one, else its UUID).
    pub(crate) uuid: String,
    /// Identity of the incremental base; `None` for a full stream.
    pub(crate) clone_uuid: Option<String>,
}

/// Longest command payload the first command may claim. The kernel builds each command
/// in its send buffer (64 KiB in protocol version 1, 16 KiB plus the largest compressed
/// extent, 144 KiB, in version 2); a `subvol` or `snapshot` command is a path and a few
/// UUIDs. Without a bound, a damaged length field would make a receive buffer up to
/// 4 GiB before parsing.
pub(crate) const BTRFS_MAX_COMMAND_LEN: usize = 1 << 20;

/// How many bytes must be read to parse the first command, given what is read so far
/// (at most [`BTRFS_MAX_COMMAND_LEN`] of payload: [`parse_btrfs_begin`] refuses a
/// longer first command).
pub(crate) fn btrfs_begin_needs(bytes: &[u8]) -> usize {
    let first = BTRFS_HEADER_LEN + BTRFS_CMD_HEADER_LEN;
    if bytes.len() < first {
        return first;
    }
    first + (u32_le(&bytes[BTRFS_HEADER_LEN..]) as usize).min(BTRFS_MAX_COMMAND_LEN)
}

fn u32_le(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn u16_le(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

/// Formats 16 bytes the way `btrfs subvolume show` prints a UUID.
pub(crate) fn format_uuid(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a BTRFS send stream's header and first command (`subvol` or `snapshot`).
pub(crate) fn parse_btrfs_begin(bytes: &[u8]) -> Result<BtrfsBegin> {
    let invalid = |detail: &str| Error::InvalidStream {
        detail: detail.to_owned(),
    };
    if bytes.len() < BTRFS_HEADER_LEN || &bytes[..13] != BTRFS_MAGIC {
        return Err(invalid(
            "no btrfs-stream magic at the start (is this a BTRFS send stream?)",
        ));
    }
    let needed = btrfs_begin_needs(bytes);
    if bytes.len() >= needed && u32_le(&bytes[BTRFS_HEADER_LEN..]) as usize > BTRFS_MAX_COMMAND_LEN
    {
        return Err(invalid(
            "the first command claims more than 1 MiB (a damaged stream)",
        ));
    }
    if bytes.len() < needed {
        return Err(invalid("the stream ends inside its first command"));
    }
    let command = u16_le(&bytes[BTRFS_HEADER_LEN + 4..]);
    if command != BTRFS_CMD_SUBVOL && command != BTRFS_CMD_SNAPSHOT {
        return Err(invalid(
            "the first command is neither `subvol` nor `snapshot`",
        ));
    }
    let mut payload = &bytes[BTRFS_HEADER_LEN + BTRFS_CMD_HEADER_LEN..needed];
    let (mut path, mut uuid, mut clone_uuid) = (None, None, None);
    while payload.len() >= 4 {
        let attribute = u16_le(payload);
        let length = u16_le(&payload[2..]) as usize;
        let Some(value) = payload.get(4..4 + length) else {
            return Err(invalid("an attribute of the first command overruns it"));
        };
        match attribute {
            BTRFS_ATTR_PATH => path = Some(String::from_utf8_lossy(value).into_owned()),
            BTRFS_ATTR_UUID if length == 16 => uuid = Some(format_uuid(value)),
            BTRFS_ATTR_CLONE_UUID if length == 16 => clone_uuid = Some(format_uuid(value)),
            _ => {}
        }
        payload = &payload[4 + length..];
    }
    let (Some(path), Some(uuid)) = (path, uuid) else {
        return Err(invalid("the first command lacks a path or UUID"));
    };
    if command == BTRFS_CMD_SNAPSHOT && clone_uuid.is_none() {
        return Err(invalid(
            "an incremental (`snapshot`) command without a parent UUID",
        ));
    }
    Ok(BtrfsBegin {
        path,
        uuid,
        clone_uuid: if command == BTRFS_CMD_SNAPSHOT {
            clone_uuid
        } else {
            None
        },
    })
}

/// Follows a BTRFS stream's command framing as bytes pass, to tell whether it ended
/// exactly after an `end` command — what the kernel writes last.
#[derive(Debug)]
pub(crate) struct BtrfsEndTracker {
    /// Bytes of the stream header still to pass.
    header_left: usize,
    /// The current command header, as far as it has arrived.
    command_header: Vec<u8>,
    /// Payload bytes of the current command still to pass.
    payload_left: usize,
    last_command: Option<u16>,
    bytes_after_end: bool,
}

impl Default for BtrfsEndTracker {
    fn default() -> Self {
        BtrfsEndTracker {
            header_left: BTRFS_HEADER_LEN,
            command_header: Vec::with_capacity(BTRFS_CMD_HEADER_LEN),
            payload_left: 0,
            last_command: None,
            bytes_after_end: false,
        }
    }
}

impl BtrfsEndTracker {
    /// Takes the next bytes of the stream.
    pub(crate) fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.header_left > 0 {
                let take = self.header_left.min(bytes.len());
                self.header_left -= take;
                bytes = &bytes[take..];
            } else if self.payload_left > 0 {
                let take = self.payload_left.min(bytes.len());
                self.payload_left -= take;
                bytes = &bytes[take..];
            } else {
                if self.last_command == Some(BTRFS_CMD_END) {
                    self.bytes_after_end = true;
                }
                let take = (BTRFS_CMD_HEADER_LEN - self.command_header.len()).min(bytes.len());
                self.command_header.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.command_header.len() == BTRFS_CMD_HEADER_LEN {
                    self.payload_left = u32_le(&self.command_header) as usize;
                    self.last_command = Some(u16_le(&self.command_header[4..]));
                    self.command_header.clear();
                }
            }
        }
    }

    /// True when everything seen so far is whole commands, the last of them `end`.
    pub(crate) fn ended_cleanly(&self) -> bool {
        self.header_left == 0
            && self.payload_left == 0
            && self.command_header.is_empty()
            && self.last_command == Some(BTRFS_CMD_END)
            && !self.bytes_after_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zfs_begin(little: bool, from: u64) -> Vec<u8> {
        let mut record = vec![0u8; ZFS_BEGIN_LEN];
        let put = |record: &mut Vec<u8>, at: usize, value: u64| {
            let bytes = if little {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            record[at..at + 8].copy_from_slice(&bytes);
        };
        put(&mut record, 8, ZFS_MAGIC);
        put(&mut record, 40, 0xdead_beef);
        put(&mut record, 48, from);
        record[56..64].copy_from_slice(b"tank/a@s");
        record
    }

    #[test]
    fn zfs_begin_records_parse_in_both_byte_orders() {
        for little in [true, false] {
            let full = parse_zfs_begin(&zfs_begin(little, 0)).unwrap();
            assert_eq!(
                full,
                ZfsBegin {
                    to_guid: 0xdead_beef,
                    from_guid: None,
                    to_name: "tank/a@s".into()
                }
            );
            assert_eq!(
                parse_zfs_begin(&zfs_begin(little, 7)).unwrap().from_guid,
                Some(7)
            );
        }
        assert!(parse_zfs_begin(&[0u8; ZFS_BEGIN_LEN]).is_err());
        assert!(parse_zfs_begin(&zfs_begin(true, 0)[..100]).is_err());
    }

    fn command(kind: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (attribute, value) in attributes {
            payload.extend_from_slice(&attribute.to_le_bytes());
            payload.extend_from_slice(&(value.len() as u16).to_le_bytes());
            payload.extend_from_slice(value);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&payload);
        out
    }

    fn btrfs_stream() -> Vec<u8> {
        let mut stream = BTRFS_MAGIC.to_vec();
        stream.extend_from_slice(&1u32.to_le_bytes());
        stream.extend(command(
            BTRFS_CMD_SNAPSHOT,
            &[
                (BTRFS_ATTR_PATH, "snap ü".as_bytes()),
                (BTRFS_ATTR_UUID, &[1; 16]),
                (BTRFS_ATTR_CLONE_UUID, &[2; 16]),
            ],
        ));
        stream.extend(command(15, &[(BTRFS_ATTR_PATH, b"file")]));
        stream.extend(command(BTRFS_CMD_END, &[]));
        stream
    }

    #[test]
    fn btrfs_first_command_and_end_are_recognised() {
        let stream = btrfs_stream();
        let begin = parse_btrfs_begin(&stream[..btrfs_begin_needs(&stream)]).unwrap();
        assert_eq!(begin.path, "snap ü");
        assert_eq!(begin.uuid, "01010101-0101-0101-0101-010101010101");
        assert_eq!(
            begin.clone_uuid.as_deref(),
            Some("02020202-0202-0202-0202-020202020202")
        );

        // A first command claiming more than any sender writes is refused after reading
        // at most the bound, not after buffering what it claims.
        let mut huge = stream.clone();
        huge[BTRFS_HEADER_LEN..BTRFS_HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let needed = btrfs_begin_needs(&huge);
        assert_eq!(
            needed,
            BTRFS_HEADER_LEN + BTRFS_CMD_HEADER_LEN + BTRFS_MAX_COMMAND_LEN
        );
        huge.resize(needed, 0);
        assert!(parse_btrfs_begin(&huge).is_err());

        let mut whole = BtrfsEndTracker::default();
        for chunk in stream.chunks(3) {
            whole.observe(chunk);
        }
        assert!(whole.ended_cleanly());
        // Cut at a command boundary (before `end`) and inside a command: both incomplete.
        for cut in [stream.len() - BTRFS_CMD_HEADER_LEN, stream.len() - 1, 20] {
            let mut tracker = BtrfsEndTracker::default();
            tracker.observe(&stream[..cut]);
            assert!(!tracker.ended_cleanly(), "cut at {cut}");
        }
    }
}
