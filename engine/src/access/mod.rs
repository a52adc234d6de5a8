//! The access check: proving, one request at a time, that the credentials may do
//! everything zib needs, before anything is written; and the bucket lifecycle rule that
//! aborts abandoned multipart uploads.
//!
//! Each [`AccessStep`] exercises one IAM permission with the cheapest request that needs
//! it, and a refusal (`403 AccessDenied`) becomes [`Error::AccessDenied`] naming the step
//! and the exact permission to add. The steps are ordered so that a refused step leaves
//! nothing behind: `s3:DeleteObject` is proven on a probe key that does not exist yet
//! (S3 answers a permitted delete of a missing key with success) before the probe is
//! written, so the probe can always be removed again.
//!
//! Permissions that backups do not need at once (restoring, the lifecycle rule) give
//! [`AccessWarning`]s instead of errors: a backup can run without them, but the user
//! should know.
//!
//! The lifecycle rule: S3 keeps the parts of an incomplete multipart upload, billed at
//! Standard rates, until someone aborts it. zib aborts its own leftovers at clean-up,
//! but a host that dies for good never cleans up, so `init` also asks the bucket to
//! abort uploads under the repository prefix [`ABORT_AFTER_DAYS`] days after they
//! started (`ensure_lifecycle_rule`). Only zib's rule ([`LIFECYCLE_RULE_ID`]) is added
//! or updated; the bucket's other rules are kept as they are.

pub(crate) mod report;

use bytes::Bytes;
use futures::TryStreamExt;
use ring::rand::SecureRandom;
use zib_storage_backend::{
    AbortIncompleteUploadsRule, ByteRange, Error as StorageError, ListEntry, Operation,
    PutPrecondition, RestoreTier, StorageBackend, StorageBackendExt, StorageClass, UploadId,
    WriteOptions,
};

pub use self::report::{
    AccessReport, AccessStep, AccessWarning, LifecycleStatus, ABORT_AFTER_DAYS, LIFECYCLE_RULE_ID,
};
use crate::error::{Error, Result};
use crate::format::layout::{access_probes_prefix, ObjectRole};
use crate::format::layout::{normalise_prefix, object_key};
use crate::format::metadata::{ObjectKind, FORMAT_NAME, FORMAT_VALUE, KIND_NAME};

/// An upload id no upload has: aborting it proves `s3:AbortMultipartUpload` (a permitted
/// request answers `NoSuchUpload`) without touching anything.
const PROBE_UPLOAD_ID: &str = "zib-access-check-no-such-upload";

/// Which steps [`check_access`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AccessCheckOptions {
    /// Write, read and delete a probe object (`init`, a health check). `false` keeps the
    /// check read-only (opening a repository writes nothing).
    pub write_probe: bool,
    /// Read the keyring (an existing repository).
    pub read_keyring: bool,
}

/// Checks, step by step, that `backend` lets zib work under `prefix`.
///
/// Runs, in order: list the prefix; read the keyring (`read_keyring`); delete a probe
/// key that does not exist, write it (zero bytes, STANDARD), read it, ask for its
/// restore, delete it (`write_probe`); list incomplete uploads; abort an upload that does
/// not exist; read the lifecycle rules. Nothing is left behind, whichever step fails.
///
/// # Errors
///
/// [`Error::AccessDenied`] for the first refused step that backups need, naming its
/// permission (a refused restore or lifecycle read is a warning in the report instead);
/// [`Error::NotARepository`] when `read_keyring` and there is no keyring; other storage
/// errors as they come.
pub(crate) async fn check_access(
    backend: &dyn StorageBackend,
    prefix: &str,
    options: &AccessCheckOptions,
) -> Result<AccessReport> {
    let prefix = normalise_prefix(prefix)?;
    let mut passed = Vec::new();
    let mut warnings = Vec::new();

    step(
        AccessStep::ListObjects,
        &prefix,
        backend.list(&prefix).try_next(),
    )
    .await?;
    passed.push(AccessStep::ListObjects);

    if options.read_keyring {
        read_keyring(backend, &prefix).await?;
        passed.push(AccessStep::ReadKeyring);
    }

    if options.write_probe {
        probe(backend, &prefix, &mut passed, &mut warnings).await?;
    }

    match backend.list_multipart_uploads(&prefix).await {
        Ok(_) => passed.push(AccessStep::ListUploads),
        Err(StorageError::Unsupported { .. }) => warnings.push(AccessWarning {
            step: AccessStep::ListUploads,
            message: unsupported_text(
                AccessStep::ListUploads,
                "an upload a host left unfinished is found only by the host that started it",
            ),
        }),
        Err(error) => return Err(denied_or(AccessStep::ListUploads, &prefix, error)),
    }

    let probe_key = object_key(&prefix, &ObjectRole::AccessProbe { nonce: 0 })?;
    let aborted = backend
        .abort_multipart(&probe_key, &UploadId::new(PROBE_UPLOAD_ID))
        .await;
    match aborted {
        // Allowed: the upload does not exist (or, impossibly, did and is now gone). Some
        // S3-compatible servers call the made-up upload id invalid instead; they judged
        // the request, so it was allowed too.
        Ok(()) | Err(StorageError::NoSuchUpload { .. } | StorageError::InvalidInput { .. }) => {
            passed.push(AccessStep::AbortUpload);
        }
        Err(error) => return Err(denied_or(AccessStep::AbortUpload, &prefix, error)),
    }
    // Resuming a backup lists the parts S3 holds of its interrupted upload.
    let listed = backend
        .list_parts(&probe_key, &UploadId::new(PROBE_UPLOAD_ID))
        .await;
    match listed {
        Ok(_) | Err(StorageError::NoSuchUpload { .. }) => passed.push(AccessStep::ListParts),
        Err(error) => return Err(denied_or(AccessStep::ListParts, &prefix, error)),
    }

    let lifecycle = lifecycle_status(backend, &prefix).await;
    if !matches!(lifecycle, LifecycleStatus::Unknown { .. }) {
        passed.push(AccessStep::ReadLifecycle);
    }
    Ok(AccessReport {
        passed,
        warnings,
        lifecycle,
    })
}

/// Reads the keyring as `open` does: a refusal names `s3:GetObject`.
async fn read_keyring(backend: &dyn StorageBackend, prefix: &str) -> Result<()> {
    let key = object_key(prefix, &ObjectRole::Keyring)?;
    match backend.get_bytes(&key, ByteRange::full()).await {
        Ok(_) => Ok(()),
        Err(StorageError::NotFound { .. }) => Err(Error::NotARepository {
            location: key.as_str().to_owned(),
        }),
        Err(error) => Err(denied_or(AccessStep::ReadKeyring, prefix, error)),
    }
}

/// The probe's steps. Once the probe is written, every later failure still deletes it
/// (the delete permission was proven first) before the failure is returned.
async fn probe(
    backend: &dyn StorageBackend,
    prefix: &str,
    passed: &mut Vec<AccessStep>,
    warnings: &mut Vec<AccessWarning>,
) -> Result<()> {
    let mut nonce = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::RandomUnavailable(crate::ids::RandomUnavailable))?;
    let role = ObjectRole::AccessProbe {
        nonce: u64::from_be_bytes(nonce),
    };
    let key = object_key(prefix, &role)?;

    step(
        AccessStep::DeleteProbeBeforeWriting,
        prefix,
        backend.delete(&key),
    )
    .await?;
    passed.push(AccessStep::DeleteProbeBeforeWriting);

    let options = WriteOptions {
        storage_class: StorageClass::Standard,
        metadata: [
            (FORMAT_NAME.to_owned(), FORMAT_VALUE.to_owned()),
            (
                KIND_NAME.to_owned(),
                ObjectKind::AccessProbe.as_str().to_owned(),
            ),
        ]
        .into(),
    };
    let written = step(
        AccessStep::WriteProbe,
        prefix,
        backend.put(&key, Bytes::new(), &options, &PutPrecondition::IfAbsent),
    )
    .await;
    if let Err(error) = written {
        // A lost answer may have left the probe written; deleting is allowed and
        // deleting a missing key succeeds, so try.
        if !matches!(error, Error::AccessDenied { .. }) {
            let _ = backend.delete(&key).await;
        }
        return Err(error);
    }
    passed.push(AccessStep::WriteProbe);

    let checks = async {
        step(
            AccessStep::ReadProbe,
            prefix,
            backend.get_bytes(&key, ByteRange::full()),
        )
        .await?;
        passed.push(AccessStep::ReadProbe);
        // A STANDARD object needs no restore: S3 checks the permission, then answers
        // that the object is not archived, which the backend reports as success.
        match backend.request_restore(&key, 1, RestoreTier::Bulk).await {
            Ok(()) => passed.push(AccessStep::RestoreProbe),
            Err(StorageError::PermissionDenied { .. }) => warnings.push(AccessWarning {
                step: AccessStep::RestoreProbe,
                message: warning_text(AccessStep::RestoreProbe, prefix, "restores will fail"),
            }),
            Err(StorageError::Unsupported { .. }) => warnings.push(AccessWarning {
                step: AccessStep::RestoreProbe,
                message: unsupported_text(
                    AccessStep::RestoreProbe,
                    "backups in an archive storage class could not be restored from it \
                     (a STANDARD repository never needs this)",
                ),
            }),
            Err(error) => return Err(Error::from(error)),
        }
        Ok(())
    };
    let outcome: Result<()> = checks.await;

    let deleted = step(AccessStep::DeleteProbe, prefix, backend.delete(&key)).await;
    match (outcome, deleted) {
        (Err(error), Ok(())) => Err(error),
        (Err(error), Err(delete_error)) => {
            tracing::warn!(key = %key, error = %delete_error, "the access probe could not be deleted; clean-up will remove it");
            Err(error)
        }
        (Ok(()), Err(delete_error)) => Err(delete_error),
        (Ok(()), Ok(())) => {
            passed.push(AccessStep::DeleteProbe);
            Ok(())
        }
    }
}

/// Awaits one request of `step`, mapping a refusal to [`Error::AccessDenied`].
async fn step<T>(
    step: AccessStep,
    prefix: &str,
    request: impl std::future::Future<Output = zib_storage_backend::Result<T>>,
) -> Result<T> {
    request
        .await
        .map_err(|error| denied_or(step, prefix, error))
}

fn denied_or(step: AccessStep, prefix: &str, error: StorageError) -> Error {
    match error {
        StorageError::PermissionDenied { .. } => Error::AccessDenied {
            step,
            permission: step.permission(),
            resource: step.resource(prefix),
            source: error,
        },
        other => Error::Storage(other),
    }
}

/// Maps a refusal while reading the keyring (`open`) to [`Error::AccessDenied`]; other
/// errors are returned as they are.
pub(crate) fn keyring_read_error(prefix: &str, error: StorageError) -> Error {
    denied_or(AccessStep::ReadKeyring, prefix, error)
}

/// Maps a refusal while listing the repository (`open`, `init`) to
/// [`Error::AccessDenied`].
pub(crate) async fn check_listing(backend: &dyn StorageBackend, prefix: &str) -> Result<()> {
    step(
        AccessStep::ListObjects,
        prefix,
        backend.list(prefix).try_next(),
    )
    .await
    .map(drop)
}

fn warning_text(step: AccessStep, prefix: &str, consequence: &str) -> String {
    format!(
        "zib may not {step}: {consequence}. Add {} on {} to the IAM policy of the user or \
         role zib runs as (it is needed for {}).",
        step.permission(),
        step.resource(prefix),
        step.needed_for()
    )
}

/// The warning for a step the server does not implement (an S3-compatible server
/// answering `501 NotImplemented`).
fn unsupported_text(step: AccessStep, consequence: &str) -> String {
    format!("this S3 server cannot {step} (it answers 501 NotImplemented): {consequence}")
}

/// The rule zib wants for a repository under `prefix`.
pub(crate) fn wanted_rule(prefix: &str) -> AbortIncompleteUploadsRule {
    AbortIncompleteUploadsRule {
        id: LIFECYCLE_RULE_ID.to_owned(),
        prefix: prefix.to_owned(),
        days_after_initiation: ABORT_AFTER_DAYS,
        enabled: true,
    }
}

/// Reads whether a lifecycle rule aborts incomplete uploads under `prefix` (already
/// normalised) within [`ABORT_AFTER_DAYS`]. Never writes; never fails: an unreadable
/// configuration is [`LifecycleStatus::Unknown`] with the permission to add.
pub(crate) async fn lifecycle_status(
    backend: &dyn StorageBackend,
    prefix: &str,
) -> LifecycleStatus {
    match backend.abort_incomplete_uploads_rules().await {
        Ok(rules) => match covering_rule(&rules, prefix) {
            Some(rule) => LifecycleStatus::Present { rule },
            None => LifecycleStatus::Missing {
                warning: missing_rule_text(prefix),
            },
        },
        Err(error) => lifecycle_failure(prefix, error),
    }
}

/// Makes sure a lifecycle rule aborts incomplete uploads under `prefix`: nothing is
/// written when one already does (zib's or the user's own); otherwise zib's rule
/// ([`LIFECYCLE_RULE_ID`]) is added, or corrected if it exists with other settings. The
/// bucket's other rules are kept. Never fails: a refusal is a status with a warning.
pub(crate) async fn ensure_lifecycle_rule(
    backend: &dyn StorageBackend,
    prefix: &str,
) -> LifecycleStatus {
    let rules = match backend.abort_incomplete_uploads_rules().await {
        Ok(rules) => rules,
        Err(error) => return lifecycle_failure(prefix, error),
    };
    if let Some(rule) = covering_rule(&rules, prefix) {
        return LifecycleStatus::Present { rule };
    }
    let rule = wanted_rule(prefix);
    match backend.put_abort_incomplete_uploads_rule(&rule).await {
        Ok(()) => LifecycleStatus::Set { rule },
        Err(error) => lifecycle_failure(prefix, error),
    }
}

/// The rule that covers `prefix`, preferring zib's own.
fn covering_rule(
    rules: &[AbortIncompleteUploadsRule],
    prefix: &str,
) -> Option<AbortIncompleteUploadsRule> {
    let covering = || {
        rules
            .iter()
            .filter(|rule| rule.covers(prefix, ABORT_AFTER_DAYS))
    };
    covering()
        .find(|rule| rule.id == LIFECYCLE_RULE_ID)
        .or_else(|| covering().next())
        .cloned()
}

fn missing_rule_text(prefix: &str) -> String {
    format!(
        "no bucket lifecycle rule aborts incomplete multipart uploads under {prefix:?}: the \
         parts of an upload abandoned by a host that never runs clean-up again stay billed \
         at S3 Standard rates. Run `zib init` with s3:PutLifecycleConfiguration allowed, or \
         add a rule with AbortIncompleteMultipartUpload DaysAfterInitiation={ABORT_AFTER_DAYS} \
         for that prefix (id {LIFECYCLE_RULE_ID:?})."
    )
}

fn lifecycle_failure(prefix: &str, error: StorageError) -> LifecycleStatus {
    match error {
        StorageError::NotApplicable { reason, .. } => LifecycleStatus::NotApplicable { reason },
        StorageError::PermissionDenied {
            operation: Operation::PutLifecycle,
            ..
        } => LifecycleStatus::Missing {
            warning: format!(
                "{} {}",
                missing_rule_text(prefix),
                warning_text(
                    AccessStep::WriteLifecycle,
                    prefix,
                    "zib could not set the rule"
                )
            ),
        },
        StorageError::PermissionDenied { .. } => LifecycleStatus::Unknown {
            warning: warning_text(
                AccessStep::ReadLifecycle,
                prefix,
                "zib cannot tell whether abandoned uploads are aborted",
            ),
        },
        StorageError::Unsupported { .. } => LifecycleStatus::Unknown {
            warning: "this S3 server has no bucket lifecycle rules (it answers 501 \
                      NotImplemented): the parts of an upload abandoned by a host that never \
                      runs clean-up again stay on the server (and are billed, where it bills)"
                .to_owned(),
        },
        other => LifecycleStatus::Unknown {
            warning: format!(
                "the bucket's lifecycle rules could not be read or written ({other}); zib \
                 cannot tell whether abandoned uploads are aborted"
            ),
        },
    }
}

/// Probe objects under `prefix` (already normalised), left behind by an access check
/// that was interrupted between writing and deleting its probe.
///
/// # Errors
///
/// Storage errors of the listing.
pub(crate) async fn leftover_probes(
    backend: &dyn StorageBackend,
    prefix: &str,
) -> Result<Vec<ListEntry>> {
    let listing = format!("{prefix}{}", access_probes_prefix());
    let entries = backend.list_all(&listing).await?;
    Ok(entries
        .into_iter()
        .filter(|entry| {
            entry
                .key
                .as_str()
                .strip_prefix(prefix)
                .and_then(ObjectRole::parse)
                .is_some_and(|role| matches!(role, ObjectRole::AccessProbe { .. }))
        })
        .collect())
}
