//! Amazon S3 (and S3-compatible servers) through aws-sdk-s3.
//!
//! Credentials, profiles and region come from the standard AWS chain (environment,
//! `~/.aws/config` and `credentials`, SSO, process credentials, instance roles) unless
//! [`S3Config`] overrides them. For S3-compatible servers set
//! [`S3Config::endpoint_url`]: addressing becomes path-style and request checksums are
//! sent only when an operation requires them ([`ChecksumMode::WhenRequired`]), because
//! the SDK's default (CRC32 trailers in aws-chunked bodies) is refused by several
//! S3-compatible servers. Against AWS the SDK default applies.
//!
//! The SDK client is built with its own retries **off**: retries belong to the one
//! [`retry`](crate::retry) decorator, so attempts and timeouts do not multiply. Errors are
//! mapped once, here, from S3 error codes (never message text) to [`Error`] meanings.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::config::{
    retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Credentials, Region,
    RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    CompletedMultipartUpload, CompletedPart as SdkCompletedPart, ExpirationStatus,
    GlacierJobParameters, LifecycleRule, LifecycleRuleFilter, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockRetentionMode, RestoreRequest, Tier,
    TransitionDefaultMinimumObjectSize,
};
use aws_smithy_types::date_time::{DateTime, Format};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::pages::paginate;
use crate::{
    validate_metadata, validate_part_number, AbortIncompleteUploadsRule, ArchiveState,
    BucketProtection, ByteRange, ByteStream, CompletePrecondition, CompletedPart, DefaultRetention,
    ETag, Error, ListEntry, MultipartUploadInfo, ObjectKey, ObjectLock, ObjectMeta, Operation,
    PartInfo, PutPrecondition, RestoreTier, Result, RetentionMode, StorageBackend, StorageClass,
    UploadId, UserMetadata, Versioning, WriteOptions,
};

/// When the client computes and sends request checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    /// The SDK default: a checksum on every request that supports one (AWS).
    WhenSupported,
    /// Only where the operation requires it (S3-compatible servers).
    WhenRequired,
}

/// Client timeouts. Defaults: connect 10 s; first response byte 300 s after the request
/// starts (this includes sending the body, so it must cover a whole part on a slow uplink:
/// 64 MiB at 1.7 Mbit/s); no limit on streaming a `get` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// Time to establish a connection.
    pub connect: Duration,
    /// Time from starting a request to the first byte of its response.
    pub first_byte: Duration,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        S3Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(300),
        }
    }
}

/// Explicit credentials, for tests and servers outside the AWS chain.
#[derive(Clone)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// How to reach a bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region; `None` takes it from the AWS chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Named profile of `~/.aws/config`; `None` uses `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Endpoint of an S3-compatible server (`--endpoint-url`); `None` for AWS.
    pub endpoint_url: Option<String>,
    /// Path-style addressing; `None`: on exactly when `endpoint_url` is set.
    pub force_path_style: Option<bool>,
    /// Request checksums; `None`: `WhenRequired` with `endpoint_url`, else the SDK default.
    pub checksums: Option<ChecksumMode>,
    /// Timeouts.
    pub timeouts: S3Timeouts,
    /// Credentials that replace the AWS chain.
    pub credentials: Option<StaticCredentials>,
}

impl S3Config {
    /// A configuration for `bucket` with everything else from the AWS chain.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            region: None,
            profile: None,
            endpoint_url: None,
            force_path_style: None,
            checksums: None,
            timeouts: S3Timeouts::default(),
            credentials: None,
        }
    }

    /// The checksum mode in effect.
    pub fn effective_checksums(&self) -> ChecksumMode {
        self.checksums.unwrap_or(if self.endpoint_url.is_some() {
            ChecksumMode::WhenRequired
        } else {
            ChecksumMode::WhenSupported
        })
    }
}

/// The S3 backend.
#[derive(Debug, Clone)]
pub struct S3Backend {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Backend {
    /// Builds the client: AWS chain, then the overrides of `config`; SDK retries off.
    ///
    /// # Errors
    /// [`Error::Config`] when no region can be found.
    pub async fn connect(config: &S3Config) -> Result<Self> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.timeouts.connect)
            .read_timeout(config.timeouts.first_byte)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(credentials) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.clone(),
                None,
                None,
                "zib-static",
            ));
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return Err(Error::Config {
                message: "no AWS region configured: set `region`, AWS_REGION or a profile's region"
                    .to_owned(),
                source: None,
            });
        }
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(RetryConfig::disabled())
            // The retry decorator owns retries; a stalled body is cut by the proxy tests'
            // first-byte timeout instead of this grace-period check, which fires on slow
            // consumers too.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(endpoint) = &config.endpoint_url {
            builder = builder.endpoint_url(endpoint);
        }
        builder = builder.force_path_style(
            config
                .force_path_style
                .unwrap_or(config.endpoint_url.is_some()),
        );
        if config.effective_checksums() == ChecksumMode::WhenRequired {
            builder = builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(S3Backend {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
        })
    }

    /// The bucket this backend stores into.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E>(&self, operation: Operation, key: &str, err: SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_error(operation, key, &self.bucket, err)
    }
}

/// Maps an SDK error to a meaning, by S3 error code and HTTP status; the SDK error is
/// kept as the source.
fn map_error<E>(operation: Operation, key: &str, bucket: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // Service errors: status, code and message only (the full context repeats the body).
    let message = match (&err, err.raw_response()) {
        (SdkError::ServiceError(_), Some(raw)) => format!(
            "HTTP {} {} {}",
            raw.status().as_u16(),
            err.code().unwrap_or("(no error code)"),
            err.message().unwrap_or_default()
        ),
        // Each cause's own words, joined; never the Debug form the SDK's `DisplayErrorContext`
        // appends (these messages reach people).
        _ => {
            let mut text = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(inner) = cause {
                let said = inner.to_string();
                if !text.contains(&said) {
                    text.push_str(": ");
                    text.push_str(&said);
                }
                cause = inner.source();
            }
            text
        }
    };
    let key = key.to_owned();
    let transient = |message: String, err: SdkError<E>| Error::Transient {
        operation,
        key: key.clone(),
        message,
        source: Some(Box::new(err)),
    };
    match &err {
        SdkError::ConstructionFailure(_) => {
            return Error::InvalidInput {
                message: format!("{operation} {key:?} could not be built: {message}"),
            }
        }
        // Timeouts, refused or reset connections, and responses cut short or unreadable.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return transient(message, err)
        }
        _ => {}
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    match meaning(code.as_deref(), status) {
        Meaning::NotFound => Error::NotFound { key },
        Meaning::NoSuchUpload => Error::NoSuchUpload {
            key,
            upload_id: String::new(),
        },
        Meaning::BucketNotFound => Error::BucketNotFound {
            bucket: bucket.to_owned(),
        },
        Meaning::NotRestored => Error::NotRestored { key },
        Meaning::Precondition => Error::Precondition { operation, key },
        Meaning::PermissionDenied => Error::PermissionDenied {
            operation,
            key,
            source: Some(Box::new(err)),
        },
        Meaning::Transient => transient(message, err),
        Meaning::InvalidInput => Error::InvalidInput {
            message: format!("{operation} {key:?} refused: {message}"),
        },
        Meaning::NotImplemented => Error::Unsupported { operation, message },
        Meaning::Protocol => Error::Protocol {
            operation,
            key,
            message,
            source: Some(Box::new(err)),
        },
    }
}

/// What an S3 error answer means to zib, before the error is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    NotFound,
    NoSuchUpload,
    BucketNotFound,
    NotRestored,
    Precondition,
    PermissionDenied,
    Transient,
    InvalidInput,
    NotImplemented,
    Protocol,
}

/// The table from an error answer's S3 code and HTTP status to its meaning. The code
/// decides where there is one; the status where there is none (HEAD answers have no
/// body) or the code is unknown. Anything else is a server this client does not
/// understand.
fn meaning(code: Option<&str>, status: Option<u16>) -> Meaning {
    match (code, status) {
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => Meaning::NotFound,
        (Some("NoSuchUpload"), _) => Meaning::NoSuchUpload,
        (Some("NoSuchBucket"), _) => Meaning::BucketNotFound,
        (Some("InvalidObjectState"), _) => Meaning::NotRestored,
        (Some("PreconditionFailed"), _) | (_, Some(412)) => Meaning::Precondition,
        (
            Some(
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AllAccessDisabled"
                | "AccountProblem"
                | "InvalidToken"
                | "ExpiredToken",
            ),
            _,
        )
        | (None, Some(401 | 403)) => Meaning::PermissionDenied,
        // S3-compatible servers answer an action they lack with 501 (so does S3 for a
        // header asking for something it does not offer): permanent, never retried.
        (Some("NotImplemented"), _) | (None, Some(501)) => Meaning::NotImplemented,
        (
            Some(
                "SlowDown"
                | "InternalError"
                | "ServiceUnavailable"
                | "RequestTimeout"
                | "ConditionalRequestConflict"
                | "OperationAborted"
                | "RequestTimeTooSkewed",
            ),
            _,
        )
        | (_, Some(500..=599)) => Meaning::Transient,
        (
            Some(
                "EntityTooSmall"
                | "EntityTooLarge"
                | "InvalidPart"
                | "InvalidPartOrder"
                | "InvalidArgument"
                | "InvalidRequest"
                | "MetadataTooLarge"
                | "KeyTooLongError"
                | "InvalidStorageClass"
                | "InvalidRange"
                | "InvalidBucketName"
                | "MalformedXML",
            ),
            _,
        )
        | (_, Some(416)) => Meaning::InvalidInput,
        _ => Meaning::Protocol,
    }
}

fn sdk_class(class: &StorageClass) -> aws_sdk_s3::types::StorageClass {
    aws_sdk_s3::types::StorageClass::from(class.as_str())
}

fn metadata_map(metadata: &UserMetadata) -> HashMap<String, String> {
    metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Parses HEAD's `x-amz-restore`: `ongoing-request="true"`, or
/// `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`.
pub fn parse_restore_header(value: &str) -> Option<ArchiveState> {
    let field = |name: &str| {
        let start = value.find(&format!("{name}=\""))? + name.len() + 2;
        let end = value[start..].find('"')? + start;
        Some(&value[start..end])
    };
    match field("ongoing-request")? {
        "true" => Some(ArchiveState::RestoreInProgress),
        "false" => {
            let expiry = DateTime::from_str(field("expiry-date")?, Format::HttpDate).ok()?;
            Some(ArchiveState::Restored {
                until: SystemTime::try_from(expiry).ok()?,
            })
        }
        _ => None,
    }
}

#[async_trait]
impl StorageBackend for S3Backend {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        validate_metadata(&options.metadata)?;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .storage_class(sdk_class(&options.storage_class))
            .set_metadata(Some(metadata_map(&options.metadata)))
            .body(SdkByteStream::from(data));
        request = match precondition {
            PutPrecondition::None => request,
            PutPrecondition::IfAbsent => request.if_none_match("*"),
            PutPrecondition::IfMatch(etag) => request.if_match(etag.as_str()),
        };
        let output = request
            .send()
            .await
            .map_err(|e| self.error(Operation::Put, key.as_str(), e))?;
        output
            .e_tag()
            .map(ETag::new)
            .ok_or_else(|| missing(Operation::Put, key, "ETag"))
    }

    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        validate_metadata(&options.metadata)?;
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .storage_class(sdk_class(&options.storage_class))
            .set_metadata(Some(metadata_map(&options.metadata)))
            .send()
            .await
            .map_err(|e| self.error(Operation::CreateMultipart, key.as_str(), e))?;
        output
            .upload_id()
            .map(UploadId::new)
            .ok_or_else(|| missing(Operation::CreateMultipart, key, "UploadId"))
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        validate_part_number(number)?;
        let size = data.len() as u64;
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload.as_str())
            .part_number(number as i32)
            .body(SdkByteStream::from(data))
            .send()
            .await
            .map_err(|e| with_upload(self.error(Operation::UploadPart, key.as_str(), e), upload))?;
        let etag = output
            .e_tag()
            .ok_or_else(|| missing(Operation::UploadPart, key, "ETag"))?;
        Ok(PartInfo {
            number,
            size,
            etag: ETag::new(etag),
        })
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let output = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload.as_str())
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| {
                    with_upload(self.error(Operation::ListParts, key.as_str(), e), upload)
                })?;
            for part in output.parts() {
                let (Some(number), Some(size), Some(etag)) =
                    (part.part_number(), part.size(), part.e_tag())
                else {
                    return Err(missing(
                        Operation::ListParts,
                        key,
                        "part number, size or ETag",
                    ));
                };
                parts.push(PartInfo {
                    number: u32::try_from(number)
                        .map_err(|_| missing(Operation::ListParts, key, "part number"))?,
                    size: required_size(Operation::ListParts, key, "part size", Some(size))?,
                    etag: ETag::new(etag),
                });
            }
            match (output.is_truncated(), output.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        SdkCompletedPart::builder()
                            .part_number(p.number as i32)
                            .e_tag(p.etag.as_str())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let mut request = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload.as_str())
            .multipart_upload(completed);
        if precondition == CompletePrecondition::IfAbsent {
            request = request.if_none_match("*");
        }
        let output = request.send().await.map_err(|e| {
            with_upload(
                self.error(Operation::CompleteMultipart, key.as_str(), e),
                upload,
            )
        })?;
        output
            .e_tag()
            .map(ETag::new)
            .ok_or_else(|| missing(Operation::CompleteMultipart, key, "ETag"))
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload.as_str())
            .send()
            .await
            .map_err(|e| {
                with_upload(
                    self.error(Operation::AbortMultipart, key.as_str(), e),
                    upload,
                )
            })?;
        Ok(())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let mut uploads = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let output = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| self.error(Operation::ListMultipartUploads, prefix, e))?;
            for upload in output.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Ok(key) = ObjectKey::new(key) else {
                    tracing::warn!(
                        key,
                        "skipping an upload whose key is not a valid object key"
                    );
                    continue;
                };
                let initiated = required_time(
                    Operation::ListMultipartUploads,
                    &key,
                    "Initiated",
                    upload.initiated(),
                )?;
                uploads.push(MultipartUploadInfo {
                    key,
                    upload_id: UploadId::new(id),
                    initiated,
                });
            }
            if output.is_truncated() == Some(true) {
                markers = (
                    output.next_key_marker().map(str::to_owned),
                    output.next_upload_id_marker().map(str::to_owned),
                );
            } else {
                break;
            }
        }
        Ok(uploads)
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| self.error(Operation::Head, key.as_str(), e))?;
        let storage_class = output.storage_class().map_or(StorageClass::Standard, |c| {
            StorageClass::from_name(c.as_str())
        });
        let archive_state = if !storage_class.is_archive() {
            ArchiveState::Available
        } else {
            match output.restore() {
                None => ArchiveState::Archived,
                Some(header) => parse_restore_header(header).ok_or_else(|| Error::Protocol {
                    operation: Operation::Head,
                    key: key.to_string(),
                    message: format!("unparseable x-amz-restore header {header:?}"),
                    source: None,
                })?,
            }
        };
        Ok(ObjectMeta {
            key: key.clone(),
            size: required_size(
                Operation::Head,
                key,
                "Content-Length",
                output.content_length(),
            )?,
            storage_class,
            metadata: output
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            etag: ETag::new(
                output
                    .e_tag()
                    .ok_or_else(|| missing(Operation::Head, key, "ETag"))?,
            ),
            last_modified: required_time(
                Operation::Head,
                key,
                "Last-Modified",
                output.last_modified(),
            )?,
            archive_state,
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        paginate(move |token: Option<String>| async move {
            let output = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.error(Operation::List, prefix, e))?;
            let mut page = Vec::with_capacity(output.contents().len());
            for object in output.contents() {
                let Some(name) = object.key() else { continue };
                // A key another tool wrote that zib could not have written (say `a//b`)
                // must not make the whole bucket unlistable.
                let Ok(key) = ObjectKey::new(name) else {
                    tracing::warn!(
                        key = name,
                        "skipping a listed key that is not a valid object key"
                    );
                    continue;
                };
                page.push(ListEntry {
                    key,
                    size: required_size(Operation::List, name, "Size", object.size())?,
                    storage_class: object.storage_class().map_or(StorageClass::Standard, |c| {
                        StorageClass::from_name(c.as_str())
                    }),
                    last_modified: required_time(
                        Operation::List,
                        name,
                        "LastModified",
                        object.last_modified(),
                    )?,
                });
            }
            let next = match output.is_truncated() {
                Some(true) => Some(
                    output
                        .next_continuation_token()
                        .map(str::to_owned)
                        .ok_or_else(|| Error::Protocol {
                            operation: Operation::List,
                            key: prefix.to_owned(),
                            message: "a truncated listing without a continuation token".to_owned(),
                            source: None,
                        })?,
                ),
                _ => None,
            };
            Ok((page, next))
        })
    }

    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_range(range.to_http_header())
            .send()
            .await
            .map_err(|e| self.error(Operation::Get, key.as_str(), e))?;
        let key = key.to_string();
        let body = output.body;
        Ok(stream::unfold(Some(body), move |body| {
            let key = key.clone();
            async move {
                let mut body = body?;
                match body.next().await? {
                    Ok(chunk) => Some((Ok(chunk), Some(body))),
                    Err(err) => Some((
                        Err(Error::Transient {
                            operation: Operation::Get,
                            key,
                            message: format!("reading the body failed: {err}"),
                            source: Some(Box::new(err)),
                        }),
                        None,
                    )),
                }
            }
        })
        .boxed())
    }

    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        if days == 0 {
            return Err(Error::invalid(
                "a restore must keep the copy for at least 1 day",
            ));
        }
        let tier = match tier {
            RestoreTier::Bulk => Tier::Bulk,
            RestoreTier::Standard => Tier::Standard,
        };
        let parameters = GlacierJobParameters::builder()
            .tier(tier)
            .build()
            .map_err(|e| Error::invalid(format!("restore parameters: {e}")))?;
        let request = RestoreRequest::builder()
            .days(i32::try_from(days).map_err(|_| Error::invalid("restore days out of range"))?)
            .glacier_job_parameters(parameters)
            .build();
        let result = self
            .client
            .restore_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .restore_request(request)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // 409: a restore is already running — the request is idempotent by contract.
            Err(err) if err.code() == Some("RestoreAlreadyInProgress") => Ok(()),
            // 403 InvalidObjectState: the object is not archived, so it is readable already.
            Err(err) if err.code() == Some("InvalidObjectState") => Ok(()),
            Err(err) => Err(self.error(Operation::RequestRestore, key.as_str(), err)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| self.error(Operation::Delete, key.as_str(), e))?;
        Ok(())
    }

    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        let (rules, _) = self.lifecycle_configuration().await?;
        Ok(rules.iter().filter_map(abort_rule).collect())
    }

    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        let (mut rules, minimum_size) = self.lifecycle_configuration().await?;
        let ours = sdk_abort_rule(rule)?;
        match rules.iter_mut().find(|r| r.id() == Some(rule.id.as_str())) {
            Some(existing) => *existing = ours,
            None => rules.push(ours),
        }
        let configuration = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| Error::invalid(format!("lifecycle configuration: {e}")))?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(configuration)
            // Written back as read, so the bucket's setting does not silently change.
            .set_transition_default_minimum_object_size(minimum_size)
            .send()
            .await
            .map_err(|e| self.error(Operation::PutLifecycle, "", e))?;
        Ok(())
    }

    async fn bucket_protection(&self) -> Result<BucketProtection> {
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.error(Operation::GetBucketProtection, "", e))?;
        // A bucket that was never versioned answers without a status.
        let versioning = match versioning.status() {
            None => Versioning::Unversioned,
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            // Suspended, or a status this SDK does not know: versions may exist.
            Some(_) => Versioning::Suspended,
        };
        let object_lock = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(output) => object_lock(output.object_lock_configuration()),
            Err(err) if err.code() == Some("ObjectLockConfigurationNotFoundError") => {
                ObjectLock::Disabled
            }
            // A server without Object Lock locks nothing; its versioning still counts.
            Err(err) if err.code() == Some("NotImplemented") => ObjectLock::Disabled,
            Err(err) => return Err(self.error(Operation::GetBucketProtection, "", err)),
        };
        Ok(BucketProtection {
            versioning,
            object_lock,
        })
    }
}

/// The Object Lock settings of a bucket's configuration (`None`: not configured).
fn object_lock(configuration: Option<&ObjectLockConfiguration>) -> ObjectLock {
    let Some(configuration) = configuration else {
        return ObjectLock::Disabled;
    };
    if configuration.object_lock_enabled() != Some(&ObjectLockEnabled::Enabled) {
        return ObjectLock::Disabled;
    }
    let default_retention = configuration
        .rule()
        .and_then(|rule| rule.default_retention())
        .and_then(|retention| {
            let mode = match retention.mode()? {
                ObjectLockRetentionMode::Compliance => RetentionMode::Compliance,
                // Governance, or a mode this SDK does not know: the weaker promise.
                _ => RetentionMode::Governance,
            };
            let days = match (retention.days(), retention.years()) {
                (Some(days), _) => days,
                (None, Some(years)) => years.saturating_mul(365),
                (None, None) => return None,
            };
            Some(DefaultRetention {
                mode,
                days: u32::try_from(days).unwrap_or(0),
            })
        });
    ObjectLock::Enabled { default_retention }
}

impl S3Backend {
    /// The bucket's whole lifecycle configuration: its rules (empty when it has none) and
    /// its default minimum object size for transitions.
    async fn lifecycle_configuration(
        &self,
    ) -> Result<(
        Vec<LifecycleRule>,
        Option<TransitionDefaultMinimumObjectSize>,
    )> {
        match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(output) => Ok((
                output.rules().to_vec(),
                output.transition_default_minimum_object_size().cloned(),
            )),
            Err(err) if err.code() == Some("NoSuchLifecycleConfiguration") => {
                Ok((Vec::new(), None))
            }
            Err(err) => Err(self.error(Operation::GetLifecycle, "", err)),
        }
    }
}

/// The abort-incomplete-uploads part of an S3 rule; `None` when the rule has no such
/// action or only matches tagged objects (uploads carry no tags, so it never applies).
fn abort_rule(rule: &LifecycleRule) -> Option<AbortIncompleteUploadsRule> {
    let days = rule
        .abort_incomplete_multipart_upload()?
        .days_after_initiation()?;
    let prefix = match rule.filter() {
        Some(filter) => {
            if filter.tag().is_some() {
                return None;
            }
            match filter.and() {
                Some(and) if !and.tags().is_empty() => return None,
                Some(and) => and.prefix(),
                None => filter.prefix(),
            }
        }
        // The top-level `Prefix` of rules written before filters existed: deprecated for
        // writing, still what such a bucket answers.
        #[allow(deprecated)]
        None => rule.prefix(),
    };
    Some(AbortIncompleteUploadsRule {
        id: rule.id().unwrap_or_default().to_owned(),
        prefix: prefix.unwrap_or_default().to_owned(),
        days_after_initiation: u32::try_from(days).unwrap_or(0),
        enabled: *rule.status() == ExpirationStatus::Enabled,
    })
}

fn sdk_abort_rule(rule: &AbortIncompleteUploadsRule) -> Result<LifecycleRule> {
    let days = i32::try_from(rule.days_after_initiation)
        .map_err(|_| Error::invalid("days after initiation out of range"))?;
    LifecycleRule::builder()
        .id(&rule.id)
        .filter(LifecycleRuleFilter::builder().prefix(&rule.prefix).build())
        .status(if rule.enabled {
            ExpirationStatus::Enabled
        } else {
            ExpirationStatus::Disabled
        })
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(days)
                .build(),
        )
        .build()
        .map_err(|e| Error::invalid(format!("lifecycle rule {:?}: {e}", rule.id)))
}

/// An answer that lacks a field S3 always sends: the server is not behaving as S3 does,
/// and a default in its place would be a guess taken for a fact.
fn missing(operation: Operation, key: impl std::fmt::Display, what: &str) -> Error {
    Error::Protocol {
        operation,
        key: key.to_string(),
        message: format!("the response has no {what}, which S3 always sends"),
        source: None,
    }
}

/// A time the server must send. Missing or out of range, it is a protocol error, never
/// 1970: clean-up would take an upload dated 1970 as old enough to abort, though another
/// host may be sending it right now.
fn required_time(
    operation: Operation,
    key: impl std::fmt::Display,
    field: &str,
    time: Option<&DateTime>,
) -> Result<SystemTime> {
    time.and_then(|t| SystemTime::try_from(*t).ok())
        .ok_or_else(|| missing(operation, key, field))
}

/// A size the server must send (a negative one is as good as missing).
fn required_size(
    operation: Operation,
    key: impl std::fmt::Display,
    field: &str,
    size: Option<i64>,
) -> Result<u64> {
    size.and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| missing(operation, key, field))
}

fn with_upload(error: Error, upload: &UploadId) -> Error {
    match error {
        Error::NoSuchUpload { key, .. } => Error::NoSuchUpload {
            key,
            upload_id: upload.to_string(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the error table, with the status S3 sends it with, and the cases
    /// decided by status alone.
    #[test]
    fn error_answers_mean_what_s3_documents() {
        use Meaning::*;
        let rows: &[(Option<&str>, Option<u16>, Meaning)] = &[
            (Some("NoSuchKey"), Some(404), NotFound),
            (Some("NotFound"), Some(404), NotFound),
            (None, Some(404), NotFound),
            (Some("NoSuchUpload"), Some(404), NoSuchUpload),
            (Some("NoSuchBucket"), Some(404), BucketNotFound),
            (Some("InvalidObjectState"), Some(403), NotRestored),
            (Some("PreconditionFailed"), Some(412), Precondition),
            (None, Some(412), Precondition),
            (Some("AccessDenied"), Some(403), PermissionDenied),
            (Some("InvalidAccessKeyId"), Some(403), PermissionDenied),
            (Some("SignatureDoesNotMatch"), Some(403), PermissionDenied),
            (Some("AllAccessDisabled"), Some(403), PermissionDenied),
            (Some("AccountProblem"), Some(403), PermissionDenied),
            (Some("InvalidToken"), Some(400), PermissionDenied),
            (Some("ExpiredToken"), Some(400), PermissionDenied),
            (None, Some(401), PermissionDenied),
            (None, Some(403), PermissionDenied),
            (Some("SlowDown"), Some(503), Transient),
            (Some("InternalError"), Some(500), Transient),
            (Some("ServiceUnavailable"), Some(503), Transient),
            (Some("RequestTimeout"), Some(400), Transient),
            (Some("ConditionalRequestConflict"), Some(409), Transient),
            (Some("OperationAborted"), Some(409), Transient),
            (Some("RequestTimeTooSkewed"), Some(403), Transient),
            (None, Some(500), Transient),
            (None, Some(503), Transient),
            // An unknown code with a 5xx status: a server in trouble, worth a retry.
            (Some("SomethingNew"), Some(502), Transient),
            (Some("EntityTooSmall"), Some(400), InvalidInput),
            (Some("EntityTooLarge"), Some(400), InvalidInput),
            (Some("InvalidPart"), Some(400), InvalidInput),
            (Some("InvalidPartOrder"), Some(400), InvalidInput),
            (Some("InvalidArgument"), Some(400), InvalidInput),
            (Some("InvalidRequest"), Some(400), InvalidInput),
            (Some("MetadataTooLarge"), Some(400), InvalidInput),
            (Some("KeyTooLongError"), Some(400), InvalidInput),
            (Some("InvalidStorageClass"), Some(400), InvalidInput),
            (Some("InvalidRange"), Some(416), InvalidInput),
            (None, Some(416), InvalidInput),
            (Some("InvalidBucketName"), Some(400), InvalidInput),
            (Some("MalformedXML"), Some(400), InvalidInput),
            (Some("NotImplemented"), Some(501), NotImplemented),
            (None, Some(501), NotImplemented),
            // What no row names is not guessed at.
            (Some("SomethingNew"), Some(400), Protocol),
            (None, Some(400), Protocol),
            (None, Some(409), Protocol),
            (None, None, Protocol),
        ];
        for &(code, status, expected) in rows {
            assert_eq!(
                meaning(code, status),
                expected,
                "{code:?} with HTTP {status:?}"
            );
        }
    }

    /// The glue from an SDK error to zib's: a fabricated service error (no server) keeps
    /// its status and code in the message, and its meaning.
    #[test]
    fn an_sdk_service_error_becomes_its_meaning() {
        use aws_sdk_s3::operation::head_object::HeadObjectError;
        use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;

        let service = |code: &str, status: u16| {
            let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
            let error = HeadObjectError::generic(
                ErrorMetadata::builder()
                    .code(code)
                    .message("said the server")
                    .build(),
            );
            SdkError::service_error(error, raw)
        };
        match map_error(Operation::Head, "k", "b", service("SlowDown", 503)) {
            Error::Transient { message, .. } => {
                assert_eq!(message, "HTTP 503 SlowDown said the server");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_error(Operation::Head, "k", "b", service("NoSuchBucket", 404)),
            Error::BucketNotFound { bucket } if bucket == "b"
        ));
        assert!(matches!(
            map_error(Operation::Head, "k", "b", service("Teapot", 418)),
            Error::Protocol { .. }
        ));
    }

    #[test]
    fn missing_times_and_sizes_are_protocol_errors_not_defaults() {
        assert!(matches!(
            required_time(Operation::ListMultipartUploads, "k", "Initiated", None),
            Err(Error::Protocol { ref message, .. }) if message.contains("Initiated")
        ));
        assert!(matches!(
            required_size(Operation::Head, "k", "Content-Length", Some(-1)),
            Err(Error::Protocol { ref message, .. }) if message.contains("Content-Length")
        ));
        assert_eq!(
            required_size(Operation::Head, "k", "Content-Length", Some(7)).unwrap(),
            7
        );
        let time = DateTime::from_secs(1_356_048_000);
        assert_eq!(
            required_time(Operation::List, "k", "LastModified", Some(&time)).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_356_048_000)
        );
    }

    #[test]
    fn restore_header_states() {
        assert_eq!(
            parse_restore_header("ongoing-request=\"true\""),
            Some(ArchiveState::RestoreInProgress)
        );
        let restored = parse_restore_header(
            "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"",
        );
        assert_eq!(
            restored,
            Some(ArchiveState::Restored {
                until: SystemTime::UNIX_EPOCH + Duration::from_secs(1_356_048_000)
            })
        );
        assert_eq!(parse_restore_header("garbage"), None);
    }

    #[test]
    fn custom_endpoints_send_checksums_only_when_required() {
        let mut config = S3Config::new("b");
        assert_eq!(config.effective_checksums(), ChecksumMode::WhenSupported);
        config.endpoint_url = Some("http://127.0.0.1:9000".to_owned());
        assert_eq!(config.effective_checksums(), ChecksumMode::WhenRequired);
        config.checksums = Some(ChecksumMode::WhenSupported);
        assert_eq!(config.effective_checksums(), ChecksumMode::WhenSupported);
    }
}
