//! What the access check reports: its steps (one IAM permission each), the warnings
//! for permissions backups can do without, and the state of the bucket's lifecycle
//! rule: the check's vocabulary, shared with
//! [`Error::AccessDenied`](crate::Error::AccessDenied).

use std::fmt;

use zib_storage_backend::AbortIncompleteUploadsRule;

/// Id of zib's lifecycle rule in the bucket's lifecycle configuration.
pub const LIFECYCLE_RULE_ID: &str = "zib-abort-incomplete-uploads";

/// Days after which the bucket aborts an incomplete multipart upload under the
/// repository: longer than any single volume upload takes, short enough that abandoned
/// parts cost little (7 days of Standard storage).
pub const ABORT_AFTER_DAYS: u32 = 7;

/// One step of the access check, each proving one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccessStep {
    /// List the objects under the repository prefix.
    ListObjects,
    /// Read the keyring (opening an existing repository).
    ReadKeyring,
    /// Delete the probe key before the probe exists (a no-op when allowed).
    DeleteProbeBeforeWriting,
    /// Write the zero-byte probe object (STANDARD class).
    WriteProbe,
    /// Read the probe object back.
    ReadProbe,
    /// Ask for a restore of the probe (not archived, so nothing is restored or billed).
    RestoreProbe,
    /// Delete the probe object.
    DeleteProbe,
    /// List incomplete multipart uploads under the prefix.
    ListUploads,
    /// Abort a multipart upload (one that does not exist).
    AbortUpload,
    /// List the parts of a multipart upload (one that does not exist).
    ListParts,
    /// Read the bucket's lifecycle configuration.
    ReadLifecycle,
    /// Write the bucket's lifecycle configuration.
    WriteLifecycle,
}

impl AccessStep {
    /// The IAM permission (action) the step needs.
    pub fn permission(self) -> &'static str {
        match self {
            Self::ListObjects => "s3:ListBucket",
            Self::ReadKeyring | Self::ReadProbe => "s3:GetObject",
            Self::DeleteProbeBeforeWriting | Self::DeleteProbe => "s3:DeleteObject",
            Self::WriteProbe => "s3:PutObject",
            Self::RestoreProbe => "s3:RestoreObject",
            Self::ListUploads => "s3:ListBucketMultipartUploads",
            Self::AbortUpload => "s3:AbortMultipartUpload",
            Self::ListParts => "s3:ListMultipartUploadParts",
            Self::ReadLifecycle => "s3:GetLifecycleConfiguration",
            Self::WriteLifecycle => "s3:PutLifecycleConfiguration",
        }
    }

    /// Whether the permission is granted on the bucket (resource `arn:aws:s3:::BUCKET`)
    /// rather than on its objects (`arn:aws:s3:::BUCKET/PREFIX*`).
    pub fn on_bucket(self) -> bool {
        matches!(
            self,
            Self::ListObjects | Self::ListUploads | Self::ReadLifecycle | Self::WriteLifecycle
        )
    }

    /// What zib needs the permission for.
    pub fn needed_for(self) -> &'static str {
        match self {
            Self::ListObjects => "finding backups and leftovers",
            Self::ReadKeyring | Self::ReadProbe => "reading the keyring and restored volumes",
            Self::DeleteProbeBeforeWriting | Self::DeleteProbe => {
                "removing leftovers and pruned backups"
            }
            Self::WriteProbe => "writing volumes, manifests and the keyring",
            Self::RestoreProbe => "restoring backups from the archive class",
            Self::ListUploads => "finding interrupted uploads",
            Self::AbortUpload => "cleaning up interrupted uploads",
            Self::ListParts => "resuming an interrupted backup without re-sending its parts",
            Self::ReadLifecycle | Self::WriteLifecycle => {
                "the bucket rule that aborts abandoned uploads"
            }
        }
    }

    pub(crate) fn resource(self, prefix: &str) -> String {
        if self.on_bucket() {
            "the bucket".to_owned()
        } else if prefix.is_empty() {
            "every object of the bucket".to_owned()
        } else {
            format!("the objects under {prefix:?}")
        }
    }
}

impl fmt::Display for AccessStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ListObjects => "list the repository's objects",
            Self::ReadKeyring => "read the keyring",
            Self::DeleteProbeBeforeWriting => "delete a probe object (before writing it)",
            Self::WriteProbe => "write a zero-byte probe object",
            Self::ReadProbe => "read the probe object",
            Self::RestoreProbe => "request a restore",
            Self::DeleteProbe => "delete the probe object",
            Self::ListUploads => "list incomplete multipart uploads",
            Self::AbortUpload => "abort a multipart upload",
            Self::ListParts => "list the parts of a multipart upload",
            Self::ReadLifecycle => "read the bucket's lifecycle rules",
            Self::WriteLifecycle => "set the bucket's lifecycle rule",
        })
    }
}

/// A permission that is missing but does not stop backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessWarning {
    /// The step that was refused.
    pub step: AccessStep,
    /// What to tell the user: the permission to add and what it is for.
    pub message: String,
}

/// The state of the bucket rule that aborts incomplete uploads under the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleStatus {
    /// A rule already covers the repository prefix (zib's or one of the user's).
    Present {
        /// The rule that covers it.
        rule: AbortIncompleteUploadsRule,
    },
    /// zib has just added (or corrected) its rule.
    Set {
        /// The rule as written.
        rule: AbortIncompleteUploadsRule,
    },
    /// No rule covers the prefix and none was set; `warning` says why and what to do.
    Missing {
        /// For the user.
        warning: String,
    },
    /// The rules could not be read; `warning` says which permission to add.
    Unknown {
        /// For the user.
        warning: String,
    },
    /// The backend has no incomplete-upload billing (a local directory).
    NotApplicable {
        /// Why.
        reason: String,
    },
}

impl LifecycleStatus {
    /// The warning to show the user, if any.
    pub fn warning(&self) -> Option<&str> {
        match self {
            Self::Missing { warning } | Self::Unknown { warning } => Some(warning),
            Self::Present { .. } | Self::Set { .. } | Self::NotApplicable { .. } => None,
        }
    }
}

/// What the access check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessReport {
    /// The steps that were allowed, in the order they ran.
    pub passed: Vec<AccessStep>,
    /// Missing permissions that do not stop backups.
    pub warnings: Vec<AccessWarning>,
    /// The lifecycle rule as found (the check itself never writes it).
    pub lifecycle: LifecycleStatus,
}

impl AccessReport {
    /// Every warning for the user: missing permissions, then the lifecycle rule's.
    pub fn warning_messages(&self) -> Vec<&str> {
        self.warnings
            .iter()
            .map(|w| w.message.as_str())
            .chain(self.lifecycle.warning())
            .collect()
    }
}
