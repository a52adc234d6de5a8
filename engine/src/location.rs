//! Where a repository lives: a storage backend and a prefix within it, made from a URL.
//!
//! ```text
//! s3://BUCKET            the whole bucket
//! s3://BUCKET/PREFIX     under PREFIX/ (any depth: s3://photos/family/zib)
//! file:///PATH           a directory (an external disk, a NAS mount)
//! /PATH, ./PATH, PATH    the same, as a plain path
//! ```
//!
//! A location made from a URL talks to the storage through zib's one retry layer
//! ([`Retrying`], with its documented defaults): the S3 backend never retries on its
//! own, so a bare one would give up at the first dropped connection.

use std::path::PathBuf;
use std::sync::Arc;

use zib_storage_backend::counting::{ByteCounter, Counting};
use zib_storage_backend::local_dir::LocalDirBackend;
use zib_storage_backend::retry::{RetryPolicy, Retrying};
#[cfg(feature = "s3")]
use zib_storage_backend::s3::{S3Backend, S3Config, S3Timeouts};
use zib_storage_backend::{Clock, StorageBackend, SystemClock};

use crate::error::{Error, Result};
use crate::format::layout::normalise_prefix;

/// A repository's place: a storage backend and the prefix (possibly empty) under which
/// every object of the repository lives.
#[derive(Debug, Clone)]
pub struct Location {
    backend: Arc<dyn StorageBackend>,
    prefix: String,
    description: String,
    /// Bytes downloaded through this location, counted below the retry layer (so failed
    /// and repeated attempts count, as on the bill): the restore's ledger reads it.
    downloaded: ByteCounter,
}

/// How to reach the storage a URL names. [`Default`]: the standard AWS chain
/// (environment, `AWS_PROFILE`, `~/.aws/config`, instance roles), AWS's own endpoint,
/// zib's default retry policy, the system clock.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Endpoint of an S3-compatible server (`--endpoint-url`); `None` for AWS.
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`https://host/BUCKET/key` instead of
    /// `https://BUCKET.host/key`); `None`: on exactly when `endpoint_url` is set (most
    /// S3-compatible servers need it, AWS prefers virtual hosts).
    pub force_path_style: Option<bool>,
    /// Region; `None` takes it from the AWS chain (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// Named profile of `~/.aws/config`; `None` uses `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Retries around every request (the backend itself never retries).
    pub retry: RetryPolicy,
    /// The S3 client's timeouts (connect, first response byte); one attempt that
    /// exceeds them fails as transient and is retried by `retry`.
    #[cfg(feature = "s3")]
    pub timeouts: S3Timeouts,
    /// The clock the local-directory backend dates its objects with.
    pub clock: Arc<dyn Clock>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            force_path_style: None,
            region: None,
            profile: None,
            retry: RetryPolicy::default(),
            #[cfg(feature = "s3")]
            timeouts: S3Timeouts::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// What a repository URL names, before anything is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    S3 { bucket: String, prefix: String },
    Directory(PathBuf),
}

impl Location {
    /// A location on `backend` under `prefix` (empty for the backend's root). Leading and
    /// trailing slashes are ignored.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when the prefix has an empty, `.` or `..` segment.
    pub fn new(backend: Arc<dyn StorageBackend>, prefix: &str) -> Result<Self> {
        let prefix = normalise_prefix(prefix)?;
        let description = if prefix.is_empty() {
            format!("{backend:?}")
        } else {
            format!("{backend:?} under {prefix}")
        };
        let counting = Counting::new(backend);
        let downloaded = counting.bytes_read();
        Ok(Self {
            backend: Arc::new(counting),
            prefix,
            description,
            downloaded,
        })
    }

    /// The location `url` names — `s3://BUCKET`, `s3://BUCKET/PREFIX`, `file:///PATH`
    /// or a directory path — connected through zib's retry layer. A directory must
    /// exist.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a URL zib does not understand (the message shows the
    /// accepted forms); storage errors when the S3 client cannot be configured (no
    /// region) or the directory does not exist.
    pub async fn from_url(url: &str, options: &ConnectOptions) -> Result<Self> {
        let (backend, prefix): (Arc<dyn StorageBackend>, String) = match parse_url(url)? {
            #[cfg(not(feature = "s3"))]
            Parsed::S3 { .. } => {
                return Err(Error::InvalidInput(format!(
                    "repository URL {url:?} names S3, but this zib-engine was built without \
                     its `s3` feature; build it with the feature, or use a directory"
                )))
            }
            #[cfg(feature = "s3")]
            Parsed::S3 { bucket, prefix } => {
                let mut config = S3Config::new(bucket);
                config.endpoint_url = options.endpoint_url.clone();
                config.force_path_style = options.force_path_style;
                config.region = options.region.clone();
                config.profile = options.profile.clone();
                config.timeouts = options.timeouts;
                let s3 = S3Backend::connect(&config).await?;
                (Arc::new(Retrying::new(s3, options.retry)), prefix)
            }
            Parsed::Directory(path) => {
                let local = LocalDirBackend::open(path, options.clock.clone())?;
                (Arc::new(Retrying::new(local, options.retry)), String::new())
            }
        };
        let mut location = Self::new(backend, &prefix)?;
        location.description = url.to_owned();
        Ok(location)
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    /// The prefix every object key starts with: empty, or ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Bytes downloaded through this location so far, every attempt counted.
    pub(crate) fn downloaded(&self) -> &ByteCounter {
        &self.downloaded
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

const URL_FORMS: &str = "s3://BUCKET[/PREFIX], file:///PATH or a directory path";

fn parse_url(url: &str) -> Result<Parsed> {
    let invalid =
        |why: &str| Error::InvalidInput(format!("repository URL {url:?} {why}; use {URL_FORMS}"));
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("names no bucket"));
        }
        // S3's bucket naming rules: 3–63 of lowercase letters, digits, dots and hyphens.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(invalid(
                "has an invalid bucket name (3 to 63 lowercase letters, digits, dots and hyphens)",
            ));
        }
        normalise_prefix(prefix)?;
        return Ok(Parsed::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(invalid("is not an absolute file URL (file:///PATH)"));
        }
        return Ok(Parsed::Directory(PathBuf::from(path)));
    }
    if url.is_empty() {
        return Err(invalid("is empty"));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(invalid(&format!("has the unsupported scheme {scheme:?}")));
    }
    Ok(Parsed::Directory(PathBuf::from(url)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_name_buckets_prefixes_and_directories() {
        assert_eq!(
            parse_url("s3://family-photos").unwrap(),
            Parsed::S3 {
                bucket: "family-photos".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse_url("s3://family-photos/zib/home/").unwrap(),
            Parsed::S3 {
                bucket: "family-photos".into(),
                prefix: "zib/home/".into()
            }
        );
        assert_eq!(
            parse_url("file:///mnt/usb/zib").unwrap(),
            Parsed::Directory("/mnt/usb/zib".into())
        );
        assert_eq!(
            parse_url("./backups").unwrap(),
            Parsed::Directory("./backups".into())
        );
        assert_eq!(
            parse_url("/srv/zib repo").unwrap(),
            Parsed::Directory("/srv/zib repo".into())
        );
    }

    #[test]
    fn malformed_urls_say_what_is_accepted() {
        for url in [
            "",
            "s3://",
            "s3:///prefix",
            "s3://Family_Photos",
            "s3://ab",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "file://relative/path",
            "gs://bucket",
            "https://example.com/bucket",
        ] {
            let error = parse_url(url).unwrap_err().to_string();
            assert!(
                error.contains("s3://BUCKET") || error.contains("segment"),
                "{url}: {error}"
            );
        }
    }
}
