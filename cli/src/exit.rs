//! Exit codes, and how an error becomes one line of what failed and one of what to do.
//!
//! Codes follow restic where it has one. The mapping reads the engine's error
//! *meanings* (its enum variants), never message text.

use std::process::ExitCode;

use zib_engine::storage::Error as StorageError;
use zib_engine::Error as EngineError;

/// How a run ended (documented in `zib --help` and README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Done.
    Done = 0,
    /// An error (or a check failed, such as `status --max-age`).
    Error = 1,
    /// Bad usage: flag, value, config file.
    Usage = 2,
    /// No repository configured, or none at the configured URL.
    NoRepository = 10,
    /// Another run holds the lock.
    Locked = 11,
    /// The passphrase does not open the keyring.
    WrongPassphrase = 12,
    /// A restore waits (thaw, next month's budget): run again later (EX_TEMPFAIL).
    RestoreWaiting = 75,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// An error of the CLI's own with its exit code and what to do about it: raised where
/// the CLI itself finds the problem (config, flags, files).
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    /// What caused it, kept as the error's source (its message follows this one's).
    pub(crate) source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl CliError {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps `cause` as this error's source.
    pub(crate) fn caused_by(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(cause));
        self
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// The exit code for an error: the CLI's own, or from the engine's meaning.
pub(crate) fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(cli) = cause.downcast_ref::<CliError>() {
            return cli.exit;
        }
        if let Some(engine) = cause.downcast_ref::<EngineError>() {
            return engine_exit(engine);
        }
        if let Some(storage) = cause.downcast_ref::<StorageError>() {
            if let Some(exit) = storage_exit(storage) {
                return exit;
            }
        }
    }
    Exit::Error
}

fn engine_exit(error: &EngineError) -> Exit {
    match error {
        EngineError::NotARepository { .. } => Exit::NoRepository,
        EngineError::Locked { .. } => Exit::Locked,
        EngineError::Crypto(zib_engine::crypto::Error::WrongPassphrase) => Exit::WrongPassphrase,
        EngineError::Storage(storage) => storage_exit(storage).unwrap_or(Exit::Error),
        _ => Exit::Error,
    }
}

fn storage_exit(error: &StorageError) -> Option<Exit> {
    match error {
        StorageError::BucketNotFound { .. } => Some(Exit::NoRepository),
        _ => None,
    }
}

/// What to do about an error, when the message itself does not say it already.
pub(crate) fn hint_for(error: &anyhow::Error) -> Option<String> {
    for cause in error.chain() {
        if let Some(cli) = cause.downcast_ref::<CliError>() {
            return cli.hint.clone();
        }
        if let Some(engine) = cause.downcast_ref::<EngineError>() {
            return engine_hint(engine);
        }
        if let Some(storage) = cause.downcast_ref::<StorageError>() {
            return storage_hint(storage);
        }
    }
    None
}

fn engine_hint(error: &EngineError) -> Option<String> {
    Some(match error {
        EngineError::Crypto(zib_engine::crypto::Error::WrongPassphrase) => {
            "type it again, or check --passphrase-file / ZIB_PASSPHRASE_FILE / ZIB_PASSPHRASE"
                .to_owned()
        }
        EngineError::Storage(storage) => return storage_hint(storage),
        EngineError::Source(zib_engine::snapshot_source::Error::DatasetNotFound { .. }) => {
            "check the name with `zfs list` (or the subvolume path), and the config's datasets"
                .to_owned()
        }
        EngineError::LocalState { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotADirectory | std::io::ErrorKind::NotFound
            ) =>
        {
            "the state directory is --state-dir, ZIB_STATE_DIR or the config's state_dir: make              it a directory this user can write (zib creates a missing one, but not under a file)"
                .to_owned()
        }
        EngineError::KeyringMissing { .. } | EngineError::KeyringDamaged { .. } => {
            "run `zib --keyring FILE key recover` with your offline copy, or `zib key recover` \
             to fetch the archived copy"
                .to_owned()
        }
        // Their messages already say what to do.
        _ => return None,
    })
}

fn storage_hint(error: &StorageError) -> Option<String> {
    Some(match error {
        StorageError::Transient { .. } => {
            "check the network and the endpoint URL (--endpoint-url, the config's \
             [repository]); run again: an interrupted backup resumes where it stopped"
                .to_owned()
        }
        StorageError::PermissionDenied { .. } => {
            "check the credentials (AWS_PROFILE, ~/.aws/credentials) and the IAM policy \
             (docs/PERMISSIONS.md)"
                .to_owned()
        }
        StorageError::Config { .. } => {
            "set the region with --region, AWS_REGION, `aws configure`, or the config's \
             [repository] region"
                .to_owned()
        }
        StorageError::BucketNotFound { .. } => {
            "check the bucket name (and the region), or create the bucket".to_owned()
        }
        StorageError::Unsupported { .. } => {
            "this S3-compatible server lacks an action zib needs here (docs/PERMISSIONS.md, \
             \"S3-compatible servers\"); on a server without RestoreObject nothing can be \
             thawed, so a repository there needs --storage-class STANDARD (zib init)"
                .to_owned()
        }
        _ => return None,
    })
}

/// The error as the user sees it: `zib: error: WHAT` and, when known, `zib: hint: WHAT
/// TO DO`. Causes are joined into the first line (`context: cause`), never a debug dump.
pub(crate) fn describe(error: &anyhow::Error) -> (String, Option<String>) {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    (message, hint_for(error))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn engine_meanings_map_to_documented_codes() {
        let not_repo = anyhow::Error::new(EngineError::NotARepository {
            location: "keyring".into(),
        });
        assert_eq!(exit_for(&not_repo), Exit::NoRepository);
        let wrong = anyhow::Error::new(EngineError::Crypto(
            zib_engine::crypto::Error::WrongPassphrase,
        ))
        .context("opening the repository");
        assert_eq!(exit_for(&wrong), Exit::WrongPassphrase);
        let locked = anyhow::Error::new(EngineError::Locked {
            dataset: "tank/photos".into(),
            lock_file: "/x.lock".into(),
            pid: Some(7),
        });
        assert_eq!(exit_for(&locked), Exit::Locked);
        let bucket = anyhow::Error::new(EngineError::Storage(StorageError::BucketNotFound {
            bucket: "b".into(),
        }));
        assert_eq!(exit_for(&bucket), Exit::NoRepository);
        let usage = anyhow::Error::new(CliError::usage("bad"));
        assert_eq!(exit_for(&usage), Exit::Usage);
        assert_eq!(exit_for(&anyhow::anyhow!("other")), Exit::Error);
    }

    #[test]
    fn errors_read_as_one_line_and_a_hint() {
        let error = anyhow::Error::new(
            CliError::new(Exit::Error, "could not read x").hint("check the file"),
        )
        .context("backing up tank/photos");
        let (message, hint) = describe(&error);
        assert_eq!(message, "backing up tank/photos: could not read x");
        assert_eq!(hint.as_deref(), Some("check the file"));
        assert!(!message.contains('\n'));
    }
}
