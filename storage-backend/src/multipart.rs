//! Multipart rules shared by the backends that implement them themselves (memory,
//! local directory), so they refuse what S3 refuses.

#[cfg(any(feature = "memory", feature = "local-dir"))]
use std::collections::BTreeMap;

use md5::{Digest, Md5};

use crate::ETag;
#[cfg(any(feature = "memory", feature = "local-dir"))]
use crate::{CompletedPart, Error, ObjectKey, Result};

/// The S3-style ETag of a single-request object: its MD5, hex, in quotes.
pub(crate) fn single_etag(data: &[u8]) -> ETag {
    ETag::new(format!("\"{}\"", hex::encode(Md5::digest(data))))
}

/// The S3-style ETag of a multipart object: MD5 of the parts' MD5s, `-`, part count.
pub(crate) fn multipart_etag(part_etags: &[&ETag]) -> ETag {
    let mut hasher = Md5::new();
    for etag in part_etags {
        if let Ok(raw) = hex::decode(etag.as_str().trim_matches('"')) {
            hasher.update(&raw);
        }
    }
    ETag::new(format!(
        "\"{}-{}\"",
        hex::encode(hasher.finalize()),
        part_etags.len()
    ))
}

/// Checks a completion request against the stored parts (number → size, ETag), as S3 does:
/// at least one part, ascending numbers, every part stored with that ETag, every part
/// but the last at least `min_part_size` bytes. (For the backends that store parts
/// themselves; S3 checks its own.)
#[cfg(any(feature = "memory", feature = "local-dir"))]
pub(crate) fn check_completion(
    key: &ObjectKey,
    stored: &BTreeMap<u32, (u64, ETag)>,
    requested: &[CompletedPart],
    min_part_size: u64,
) -> Result<()> {
    if requested.is_empty() {
        return Err(Error::invalid(format!("completing {key:?} with no parts")));
    }
    for pair in requested.windows(2) {
        if pair[0].number >= pair[1].number {
            return Err(Error::invalid(format!(
                "parts of {key:?} must be listed in ascending order without repeats (part {} after {})",
                pair[1].number, pair[0].number
            )));
        }
    }
    for (index, part) in requested.iter().enumerate() {
        let Some((size, etag)) = stored.get(&part.number) else {
            return Err(Error::invalid(format!(
                "part {} of {key:?} was never uploaded",
                part.number
            )));
        };
        if *etag != part.etag {
            return Err(Error::invalid(format!(
                "part {} of {key:?} has ETag {etag}, not {}",
                part.number, part.etag
            )));
        }
        let is_last = index + 1 == requested.len();
        if !is_last && *size < min_part_size {
            return Err(Error::invalid(format!(
                "part {} of {key:?} is {size} bytes; every part but the last must be at least {min_part_size}",
                part.number
            )));
        }
    }
    Ok(())
}
