//! What every command needs, validated once: the config file merged with the flags, the
//! state directory, the clock, the repository's location and the passphrase, how
//! progress and results are shown.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use zib_engine::snapshot_source::btrfs::BtrfsSource;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::storage::Clock;
use zib_engine::{ConnectOptions, DatasetName, Host, Location, Repository, SnapshotSource};

use crate::args::Global;
use crate::config::{self, Config, ConfigPath, DatasetConfig, PolicyConfig, RepositoryConfig};
use crate::exit::{CliError, Exit};
use crate::passphrase::{self, Sources};
use crate::progress::Mode;

/// The run's settings.
pub(crate) struct App {
    pub(crate) global: Global,
    pub(crate) config_path: ConfigPath,
    pub(crate) config: Option<Config>,
    pub(crate) state_dir: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) clock: Arc<dyn Clock>,
}

impl App {
    pub(crate) fn new(global: Global) -> anyhow::Result<Self> {
        let config_path = ConfigPath::resolve(global.config.as_deref())?;
        let config = config::load(&config_path)?;
        if config.is_none() && config_path.named {
            // A file the user named must exist (init creates it).
            tracing::debug!(path = %config_path.path.display(), "the named config file does not exist");
        }
        let state_dir = match (
            &global.state_dir,
            config.as_ref().and_then(|c| c.state_dir.clone()),
        ) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => dir,
            (None, None) if config::running_as_root() => PathBuf::from("/var/lib/zib"),
            (None, None) => config::xdg_dir("XDG_STATE_HOME", ".local/state")?.join("zib"),
        };
        let mode = Mode::choose(global.quiet);
        Ok(Self {
            mode,
            clock: crate::clock::choose()?,
            global,
            config_path,
            config,
            state_dir,
        })
    }

    /// The repository section, with the flags applied over it.
    pub(crate) fn repository_config(&self) -> Result<RepositoryConfig, CliError> {
        let Some(mut repository) = self.config.as_ref().and_then(|c| c.repository.clone()) else {
            return Err(CliError::new(
                Exit::NoRepository,
                if self.config.is_some() {
                    format!(
                        "the config file {} names no repository ([repository] url)",
                        self.config_path.path.display()
                    )
                } else {
                    format!(
                        "no repository is configured: the config file {} does not exist",
                        self.config_path.path.display()
                    )
                },
            )
            .hint(
                "run `zib init URL` first, or name a config file with --config (or ZIB_CONFIG)",
            ));
        };
        self.apply_flags(&mut repository);
        Ok(repository)
    }

    /// `--endpoint-url`, `--region`, `--profile`, `--path-style` over `repository`.
    pub(crate) fn apply_flags(&self, repository: &mut RepositoryConfig) {
        let flags = &self.global.s3;
        if flags.endpoint_url.is_some() {
            repository.endpoint_url.clone_from(&flags.endpoint_url);
        }
        if flags.region.is_some() {
            repository.region.clone_from(&flags.region);
        }
        if flags.profile.is_some() {
            repository.profile.clone_from(&flags.profile);
        }
        if flags.path_style.is_some() {
            repository.path_style = flags.path_style;
        }
    }

    /// The location `repository` names, connected.
    pub(crate) async fn location(&self, repository: &RepositoryConfig) -> anyhow::Result<Location> {
        let mut timeouts = zib_engine::storage::s3::S3Timeouts::default();
        if let Some(timeout) = repository.request_timeout {
            timeouts.first_byte = timeout.0;
        }
        let options = ConnectOptions {
            timeouts,
            endpoint_url: repository.endpoint_url.clone(),
            force_path_style: repository.path_style,
            region: repository.region.clone(),
            profile: repository.profile.clone(),
            clock: self.clock.clone(),
            ..ConnectOptions::default()
        };
        match Location::from_url(&repository.url, &options).await {
            Ok(location) => Ok(location),
            Err(zib_engine::Error::InvalidInput(message)) => Err(CliError::usage(message).into()),
            Err(zib_engine::Error::Storage(zib_engine::storage::Error::BucketNotFound {
                bucket,
            })) => Err(CliError::new(
                Exit::NoRepository,
                format!(
                    "there is no repository at {}: {bucket} does not exist",
                    repository.url
                ),
            )
            .hint("check the URL in the config file, or run `zib init URL`")
            .into()),
            Err(error) => Err(anyhow::Error::new(error)
                .context(format!("could not connect to {}", repository.url))),
        }
    }

    pub(crate) fn host(&self) -> Host {
        Host::new(&self.state_dir).with_clock(self.clock.clone())
    }

    /// Where the passphrase is looked for.
    pub(crate) fn passphrase_sources(&self) -> Sources {
        Sources {
            file: self.global.passphrase_file.clone(),
            config_file: self.config.as_ref().and_then(|c| c.passphrase_file.clone()),
            env: "ZIB_PASSPHRASE",
            prompt: "Passphrase",
        }
    }

    /// Opens the configured repository: with `--keyring FILE` from that copy, else from
    /// its live keyring.
    pub(crate) async fn open(&self) -> anyhow::Result<(Repository, RepositoryConfig)> {
        // The configuration is checked before the passphrase is asked for.
        self.repository_config()?;
        let passphrase = passphrase::read(&self.passphrase_sources(), false)?;
        self.open_with(&passphrase).await
    }

    /// [`open`](Self::open) with a passphrase already read.
    pub(crate) async fn open_with(
        &self,
        passphrase: &zib_engine::Passphrase,
    ) -> anyhow::Result<(Repository, RepositoryConfig)> {
        let repository = self.repository_config()?;
        let location = self.location(&repository).await?;
        let opened = match &self.global.keyring {
            Some(file) => {
                let keyring = zeroize::Zeroizing::new(std::fs::read(file).map_err(|error| {
                    CliError::new(
                        Exit::Error,
                        format!(
                            "could not read the keyring file {}: {error}",
                            file.display()
                        ),
                    )
                    .hint("name the offline copy `zib key export` wrote (zib-keyring-*.bin)")
                })?);
                Repository::open_with_keyring(&location, passphrase, &keyring, self.host()).await
            }
            None => Repository::open(&location, passphrase, self.host()).await,
        };
        let opened = opened.map_err(|error| {
            anyhow::Error::new(error).context(format!(
                "could not open the repository at {}",
                repository.url
            ))
        })?;
        Ok((opened, repository))
    }

    /// The configured datasets (`[[dataset]]`).
    pub(crate) fn configured_datasets(&self) -> &[DatasetConfig] {
        self.config
            .as_ref()
            .map_or(&[][..], |c| c.datasets.as_slice())
    }

    /// The policy of `dataset`: the config's `[policy]`, overridden by its entry's.
    pub(crate) fn policy_of(&self, dataset: &str) -> PolicyConfig {
        let base = self
            .config
            .as_ref()
            .map(|c| c.policy.clone())
            .unwrap_or_default();
        match self.dataset_entry(dataset) {
            Some(entry) => base.overridden_by(&entry.policy),
            None => base,
        }
    }

    fn dataset_entry(&self, dataset: &str) -> Option<&DatasetConfig> {
        self.configured_datasets().iter().find(|entry| {
            entry.name == dataset
                || (entry.recursive && dataset.starts_with(&format!("{}/", entry.name)))
        })
    }

    /// The price table: the config's overrides over the us-east-1 defaults.
    pub(crate) fn prices(&self) -> zib_engine::planner::PriceTable {
        self.config
            .as_ref()
            .and_then(|c| c.prices.clone())
            .unwrap_or_default()
    }

    /// The dataset a user named, with the source that reaches it: a ZFS dataset
    /// (`pool/name`), or a BTRFS subvolume (a path).
    pub(crate) fn source_for(
        &self,
        name: &str,
    ) -> anyhow::Result<(Box<dyn SnapshotSource>, DatasetName)> {
        if name.starts_with('/') || name.starts_with('.') {
            let path = std::path::absolute(name)
                .with_context(|| format!("could not make {name} an absolute path"))?;
            let dataset =
                DatasetName::path(&path).map_err(|error| CliError::usage(error.to_string()))?;
            let snapshot_dir = self.snapshot_dir_of(dataset.as_str());
            Ok((Box::new(BtrfsSource::new(snapshot_dir)), dataset))
        } else {
            let dataset = DatasetName::zfs(name).map_err(|error| {
                CliError::usage(error.to_string()).hint(
                    "name a ZFS dataset as pool/name, or a BTRFS subvolume by its absolute path",
                )
            })?;
            Ok((Box::new(ZfsSource::new()), dataset))
        }
    }

    /// Where the snapshots of a BTRFS subvolume go: its config entry's `snapshot_dir`,
    /// else `.zib-snapshots` beside it.
    pub(crate) fn snapshot_dir_of(&self, subvolume: &str) -> PathBuf {
        self.configured_datasets()
            .iter()
            .find(|entry| {
                entry.name == subvolume
                    || std::path::absolute(&entry.name)
                        .is_ok_and(|path| path.as_os_str() == subvolume)
            })
            .and_then(|entry| entry.snapshot_dir.clone())
            .unwrap_or_else(|| default_snapshot_dir(Path::new(subvolume)))
    }

    /// Prints a line of the text result (nothing with `--json`).
    #[allow(clippy::print_stdout)] // the CLI is where results are printed
    pub(crate) fn say(&self, line: impl AsRef<str>) {
        if !self.global.json {
            println!("{}", line.as_ref());
        }
    }
}

/// BTRFS snapshots of `/a/b/photos` go to `/a/b/.zib-snapshots` by default: beside the
/// subvolume, so on the same file system (a snapshot cannot cross file systems).
fn default_snapshot_dir(subvolume: &Path) -> PathBuf {
    subvolume
        .parent()
        .unwrap_or(Path::new("/"))
        .join(".zib-snapshots")
}
