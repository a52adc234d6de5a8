//! The offline copy: everything a restore needs besides the passphrase and the bucket,
//! written into a directory for a USB stick or a printer.
//!
//! The keyring (the one object without which nothing can be read), the decoder kit's
//! files (`RESTORE.txt`, `FORMAT.md`, `zib_reference.py` — the same bytes the
//! repository carries under `kit/`) and a one-page recovery sheet, `README.txt`, that
//! says which repository this is, where it lives and what to do.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::layout::compact_utc;
use crate::kit::FILES;
use crate::repository::Repository;

/// What the recovery sheet says about where the repository lives: what the engine does
/// not know by itself (the URL the user gave, the region, the endpoint).
#[derive(Debug, Clone, Default)]
pub struct OfflineCopyOptions {
    /// The repository's URL as the user knows it: `s3://BUCKET/PREFIX` or a directory.
    pub url: String,
    /// The bucket's AWS region, when known.
    pub region: Option<String>,
    /// The S3-compatible endpoint, when it is not AWS's.
    pub endpoint_url: Option<String>,
    /// The keyring to write: `None` for the repository's live keyring (read and checked),
    /// or a copy (the one this handle was opened with), which must hold this
    /// repository's data key.
    pub keyring: Option<Vec<u8>>,
    /// Lines the caller adds to the sheet's "what to do" (for example how its own
    /// program opens the repository with the keyring file).
    pub extra_instructions: Vec<String>,
}

/// What [`Repository::export_offline_copy`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineCopy {
    /// The keyring file (`zib-keyring-<repository id>.bin`, readable by its owner only).
    pub keyring_file: PathBuf,
    /// The recovery sheet (`README.txt`).
    pub sheet_file: PathBuf,
    /// Every file written, the keyring and the sheet included.
    pub files: Vec<PathBuf>,
}

/// The name of the recovery sheet in the exported directory.
pub const SHEET_NAME: &str = "README.txt";

impl Repository {
    /// Writes the offline copy into `dir` (created if needed; files of the same names
    /// are replaced): the keyring, the decoder kit (`RESTORE.txt`, `FORMAT.md`,
    /// `zib_reference.py`) and a one-page recovery sheet, `README.txt`, with the
    /// repository id, bucket, prefix, region and what to do. The user keeps it away
    /// from this machine; it is useless without the passphrase, which it never contains.
    ///
    /// ```
    /// # use zib_engine::{Host, InitOptions, Location, OfflineCopyOptions, Passphrase, Repository};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::create_dir(dir.path().join("repository"))?;
    /// # let url = dir.path().join("repository").to_str().unwrap().to_owned();
    /// # let location = Location::from_url(&url, &Default::default()).await?;
    /// # let options = InitOptions { kdf: zib_engine::crypto::KdfParams::new(10, 8, 1)?, ..InitOptions::default() };
    /// # let (repository, _) = Repository::init(&location, &Passphrase::new("pw".into()), &options, Host::new(dir.path().join("state"))).await?;
    /// let usb_stick = dir.path().join("usb");
    /// let copy = repository
    ///     .export_offline_copy(&usb_stick, &OfflineCopyOptions { url, ..Default::default() })
    ///     .await?;
    /// assert!(copy.keyring_file.is_file());
    /// assert!(std::fs::read_to_string(&copy.sheet_file)?.contains(&repository.id().to_string()));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ForeignKeyring`] when `options.keyring` holds another data key;
    /// [`Error::Crypto`] when it is not a keyring; the errors of
    /// [`keyring_bytes`](Self::keyring_bytes) for the live keyring;
    /// [`Error::OfflineCopy`] when a file cannot be written (the error names it).
    pub async fn export_offline_copy(
        &self,
        dir: &Path,
        options: &OfflineCopyOptions,
    ) -> Result<OfflineCopy> {
        let keyring = match &options.keyring {
            Some(bytes) => {
                let parsed = zib_crypto::Keyring::from_bytes(bytes)?;
                if parsed.key_id() != self.context().data_key().id() {
                    return Err(Error::ForeignKeyring {
                        location: "the keyring to export".into(),
                        reason: format!(
                            "it holds data key {}, this repository's is {}",
                            parsed.key_id(),
                            self.context().data_key().id()
                        ),
                    });
                }
                bytes.clone()
            }
            None => self.keyring_bytes().await?,
        };
        let write_error = |path: &Path, source: std::io::Error| Error::OfflineCopy {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|error| write_error(dir, error))?;
        let mut files = Vec::new();
        let keyring_file = dir.join(format!("zib-keyring-{}.bin", self.id()));
        write_private(&keyring_file, &keyring)
            .map_err(|error| write_error(&keyring_file, error))?;
        files.push(keyring_file.clone());
        for file in &FILES {
            let path = dir.join(file.name);
            std::fs::write(&path, file.contents).map_err(|error| write_error(&path, error))?;
            files.push(path);
        }
        let sheet_file = dir.join(SHEET_NAME);
        let sheet = recovery_sheet(self, options, &keyring_file)?;
        std::fs::write(&sheet_file, sheet).map_err(|error| write_error(&sheet_file, error))?;
        files.push(sheet_file.clone());
        Ok(OfflineCopy {
            keyring_file,
            sheet_file,
            files,
        })
    }
}

/// Writes a file only its owner may read (the keyring: useless without the passphrase,
/// but no one else's business).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // An existing file keeps its mode on open: make it private too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, bytes)
    }
}

/// Where the repository lives, split as the sheet shows it.
fn place(url: &str) -> (String, String) {
    match url.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            let prefix = if prefix.is_empty() {
                "(none: keys start at the bucket's root)".to_owned()
            } else {
                format!("{prefix}/  (every key below starts with it)")
            };
            (
                format!("Bucket:          {bucket}\n"),
                format!("Prefix:          {prefix}\n"),
            )
        }
        None => (
            format!(
                "Directory:       {}\n",
                url.strip_prefix("file://").unwrap_or(url)
            ),
            String::new(),
        ),
    }
}

/// The one-page recovery sheet.
fn recovery_sheet(
    repository: &Repository,
    options: &OfflineCopyOptions,
    keyring_file: &Path,
) -> Result<String> {
    let keyring_name = keyring_file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (bucket, prefix) = place(&options.url);
    let region = options
        .region
        .as_deref()
        .map(|region| format!("Region:          {region}\n"))
        .unwrap_or_default();
    let endpoint = options
        .endpoint_url
        .as_deref()
        .map(|url| format!("Endpoint:        {url}  (not AWS: set AWS_ENDPOINT_URL to it)\n"))
        .unwrap_or_default();
    let seconds = repository
        .context()
        .clock()
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });
    // `yyyymmddThhmmssZ` → `yyyy-mm-dd hh:mm:ss UTC`, for a person reading paper.
    let stamp = compact_utc(seconds);
    let exported = format!(
        "{}-{}-{} {}:{}:{} UTC",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let url = &options.url;
    let mut extra = String::new();
    for line in &options.extra_instructions {
        extra.push_str(&format!("   {line}\n"));
    }
    let mut kit = String::new();
    for file in &FILES {
        kit.push_str(&format!("  {:<18} {}\n", file.name, file.what));
    }
    Ok(format!(
        "zib recovery sheet                                  (print it; keep it with the stick)\n\
         ==================\n\
         \n\
         Repository id:   {id}\n\
         Repository:      {url}\n\
         {bucket}{prefix}{region}{endpoint}\
         Keyring file:    {keyring_name}\n\
         Data key id:     {key_id}\n\
         Format:          zib format version 1\n\
         Exported:        {exported}\n\
         \n\
         The passphrase is NOT on this sheet. Without it nothing here can be read.\n\
         \n\
         Beside this sheet:\n\
         \n\
         \x20 {keyring_name}\n\
         \x20 {empty:<18} the keyring: the data key, wrapped with the passphrase\n\
         {kit}\
         \n\
         What to do\n\
         ----------\n\
         \n\
         1. Keep this copy away from the machine it backs up. If the passphrase is changed,\n\
         \x20  export again: the keyring file changes with it.\n\
         2. If the repository's own keyring object is lost or damaged, the keyring file\n\
         \x20  replaces it: with the passphrase, it opens the repository.\n\
         {extra}\
         3. Without zib, follow RESTORE.txt: with Python 3 and its `cryptography` package\n\
         \x20  (and boto3 or the `aws` CLI for S3), this keyring and the passphrase:\n\
         \x20    ZIB_KEYRING_FILE={keyring_name} python3 zib_reference.py catalog {url}\n\
         \x20  lists the backups; `thaw` and `restore ... -- zfs receive POOL/NEW` get them\n\
         \x20  back. FORMAT.md specifies every byte, for writing a decoder anew.\n\
         4. The repository also carries these files itself (README.txt and kit/ at its\n\
         \x20  root), in case this copy is lost.\n",
        id = repository.id(),
        key_id = repository.context().data_key().id(),
        empty = "",
    ))
}
