//! The config file: the repository's URL and how to reach it, the datasets to back up
//! with their policy, restore defaults and prices — so that after `zib init` no command
//! needs them again.
//!
//! Where it is: `--config FILE`, else `$ZIB_CONFIG`, else `/etc/zib/config.toml` as
//! root, else `$XDG_CONFIG_HOME/zib/config.toml` (`~/.config/zib/config.toml`). Every
//! key is documented in `docs/CLI.md`; unknown keys are refused, so a typo never passes
//! silently as a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zib_engine::planner::{ConsolidationMode, Policy, PriceTable};

use crate::exit::{CliError, Exit};
use crate::units::Size;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) repository: Option<RepositoryConfig>,
    /// Local state (default ~/.local/state/zib, /var/lib/zib as root).
    pub(crate) state_dir: Option<PathBuf>,
    /// A file holding the passphrase.
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Policy of every dataset (each dataset may override any field).
    #[serde(default)]
    pub(crate) policy: PolicyConfig,
    /// Restore defaults.
    #[serde(default)]
    pub(crate) restore: RestoreConfig,
    /// Price table overrides (us-east-1 defaults; field names in docs/COSTS.md).
    pub(crate) prices: Option<PriceTable>,
    /// The datasets `zib backup` backs up when none is named.
    #[serde(default, rename = "dataset")]
    pub(crate) datasets: Vec<DatasetConfig>,
}

/// `[repository]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepositoryConfig {
    /// `s3://BUCKET[/PREFIX]`, `file:///PATH` or a directory.
    pub(crate) url: String,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) path_style: Option<bool>,
    /// How long one S3 request may take until the first byte of its answer (sending a
    /// part's body included) before it is retried: `"300s"`, `"10m"`.
    pub(crate) request_timeout: Option<DurationValue>,
}

/// `[[dataset]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatasetConfig {
    /// A ZFS dataset (`pool/name`) or a BTRFS subvolume (`/path`).
    pub(crate) name: String,
    /// Also every dataset below it, each its own chain (ZFS).
    #[serde(default)]
    pub(crate) recursive: bool,
    /// BTRFS: where zib keeps the subvolume's snapshots (default: `.zib-snapshots`
    /// beside the subvolume).
    pub(crate) snapshot_dir: Option<PathBuf>,
    /// Overrides of the top-level `[policy]`.
    #[serde(default)]
    pub(crate) policy: PolicyConfig,
}

/// `[policy]` and `[dataset.policy]`: what the planner may do, and how streams are cut.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyConfig {
    pub(crate) consolidation: Option<ConsolidationMode>,
    pub(crate) horizon_months: Option<u32>,
    pub(crate) min_age_days: Option<u32>,
    pub(crate) keep_restore_points: Option<u32>,
    pub(crate) grace_days: Option<u32>,
    pub(crate) backups_per_month: Option<u32>,
    pub(crate) restores_per_year: Option<f64>,
    pub(crate) volume_size: Option<SizeValue>,
    pub(crate) part_size: Option<SizeValue>,
    pub(crate) parts_in_flight: Option<usize>,
}

/// `[restore]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreConfig {
    pub(crate) monthly_budget: Option<SizeValue>,
    pub(crate) tier: Option<String>,
    pub(crate) staging_dir: Option<PathBuf>,
    /// The download rate to plan with (default 5 MiB, per second).
    pub(crate) download_rate: Option<SizeValue>,
}

/// A size in the config: bytes as an integer, or text such as `"1GiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SizeValue(pub(crate) u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Input {
            Bytes(u64),
            Text(String),
        }
        match Input::deserialize(deserializer)? {
            Input::Bytes(bytes) => Ok(SizeValue(bytes)),
            Input::Text(text) => text
                .parse::<Size>()
                .map(|size| SizeValue(size.0))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A duration in the config: text such as `"300s"`, `"10m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurationValue(pub(crate) std::time::Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = text
            .parse::<crate::units::MaxAge>()
            .map_err(serde::de::Error::custom)?
            .0;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a request timeout of zero never lets a request finish; write e.g. \"300s\"",
            ));
        }
        Ok(DurationValue(duration))
    }
}

impl PolicyConfig {
    /// `self` with the fields `over` sets replaced.
    pub(crate) fn overridden_by(&self, over: &PolicyConfig) -> PolicyConfig {
        PolicyConfig {
            consolidation: over.consolidation.or(self.consolidation),
            horizon_months: over.horizon_months.or(self.horizon_months),
            min_age_days: over.min_age_days.or(self.min_age_days),
            keep_restore_points: over.keep_restore_points.or(self.keep_restore_points),
            grace_days: over.grace_days.or(self.grace_days),
            backups_per_month: over.backups_per_month.or(self.backups_per_month),
            restores_per_year: over.restores_per_year.or(self.restores_per_year),
            volume_size: over.volume_size.or(self.volume_size),
            part_size: over.part_size.or(self.part_size),
            parts_in_flight: over.parts_in_flight.or(self.parts_in_flight),
        }
    }

    /// The planner's policy: its defaults, with the fields set here.
    pub(crate) fn policy(&self) -> Policy {
        let mut policy = Policy::default();
        if let Some(value) = self.consolidation {
            policy.consolidation = value;
        }
        if let Some(value) = self.horizon_months {
            policy.horizon_months = value;
        }
        if let Some(value) = self.min_age_days {
            policy.min_age_days = value;
        }
        if let Some(value) = self.keep_restore_points {
            policy.keep_restore_points = value;
        }
        if let Some(value) = self.grace_days {
            policy.grace_days = value;
        }
        if let Some(value) = self.backups_per_month {
            policy.backups_per_month = value;
        }
        if let Some(value) = self.restores_per_year {
            policy.restores_per_year = value;
        }
        if let Some(value) = self.volume_size {
            policy.volume_size = value.0;
        }
        if let Some(value) = self.part_size {
            policy.part_size = value.0;
        }
        policy
    }
}

/// Where the config file is, and whether it was named (`--config`, `ZIB_CONFIG`) or is
/// the default.
#[derive(Debug, Clone)]
pub(crate) struct ConfigPath {
    pub(crate) path: PathBuf,
    pub(crate) named: bool,
}

impl ConfigPath {
    pub(crate) fn resolve(named: Option<&Path>) -> Result<Self, CliError> {
        if let Some(path) = named {
            return Ok(Self {
                path: path.to_owned(),
                named: true,
            });
        }
        let path = if running_as_root() {
            PathBuf::from("/etc/zib/config.toml")
        } else {
            xdg_dir("XDG_CONFIG_HOME", ".config")?.join("zib/config.toml")
        };
        Ok(Self { path, named: false })
    }
}

/// Reads the config file; `None` when it does not exist.
pub(crate) fn load(path: &ConfigPath) -> Result<Option<Config>, CliError> {
    let text = match std::fs::read_to_string(&path.path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(CliError::new(
                Exit::Error,
                format!(
                    "could not read the config file {}: {error}",
                    path.path.display()
                ),
            )
            .hint("check its permissions, or name another with --config"))
        }
    };
    let config: Config = toml::from_str(&text).map_err(|error| {
        // toml's message spans lines (it quotes the offending line); keep its first.
        let first = error
            .message()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let line = error
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1)
            .map(|line| format!(" (line {line})"))
            .unwrap_or_default();
        CliError::usage(format!(
            "the config file {} is not valid{line}: {first}",
            path.path.display()
        ))
        .hint("fix it; every key is listed in docs/CLI.md")
    })?;
    if let Some(policy) = [&config.policy]
        .into_iter()
        .chain(config.datasets.iter().map(|dataset| &dataset.policy))
        .map(|policy| config.policy.overridden_by(policy).policy())
        .find_map(|policy| policy.validate().err())
    {
        return Err(CliError::usage(format!(
            "the config file {} has an invalid policy: {policy}",
            path.path.display()
        )));
    }
    Ok(Some(config))
}

/// The config file `zib init` writes: the repository, and commented examples of the
/// rest.
pub(crate) fn initial_text(
    repository: &RepositoryConfig,
    passphrase_file: Option<&Path>,
) -> String {
    let mut text =
        String::from("# zib configuration, written by `zib init`. Every key: docs/CLI.md.\n\n");
    // Top-level keys come before the first table.
    match passphrase_file.and_then(Path::to_str) {
        Some(file) => text.push_str(&format!(
            "# The passphrase file given at init (for unattended runs: cron, systemd).\n\
             passphrase_file = {}\n\n",
            toml_string(file)
        )),
        None => text.push_str(
            "# A file holding the passphrase, for unattended runs (cron, systemd):\n\
             # passphrase_file = \"/root/.zib-passphrase\"\n\n",
        ),
    }
    text.push_str("[repository]\n");
    text.push_str(&format!("url = {}\n", toml_string(&repository.url)));
    for (key, value) in [
        ("endpoint_url", &repository.endpoint_url),
        ("region", &repository.region),
        ("profile", &repository.profile),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("{key} = {}\n", toml_string(value)));
        }
    }
    if let Some(path_style) = repository.path_style {
        text.push_str(&format!("path_style = {path_style}\n"));
    }
    text.push_str(
        "\n# The datasets `zib backup` backs up when none is named:\n\
         # [[dataset]]\n\
         # name = \"tank/photos\"\n\
         # recursive = true\n\
         # [dataset.policy]\n\
         # consolidation = \"never\"\n\
         #\n\
         # [[dataset]]\n\
         # name = \"/mnt/data/documents\"        # a BTRFS subvolume\n\
         \n\
         # Every dataset's policy (defaults shown):\n\
         # [policy]\n\
         # consolidation = \"auto\"\n\
         # keep_restore_points = 1\n\
         # volume_size = \"1GiB\"\n\
         \n\
         # [restore]\n\
         # monthly_budget = \"100GB\"\n\
         # tier = \"bulk\"\n",
    );
    text
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// True when this process runs as root (its defaults are then system-wide).
pub(crate) fn running_as_root() -> bool {
    // /proc/self/status's Uid line: real, effective, saved, file-system uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// `$VARIABLE`, else `$HOME/fallback` (the XDG base directory rule).
pub(crate) fn xdg_dir(variable: &str, fallback: &str) -> Result<PathBuf, CliError> {
    if let Some(dir) = std::env::var_os(variable).filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(fallback))
        .ok_or_else(|| {
            CliError::usage(format!("neither {variable} nor HOME is set"))
                .hint("set HOME, or name the files with --config and --state-dir")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_config_with_datasets_and_their_policy_parses() {
        let config: Config = toml::from_str(
            r#"
            state_dir = "/srv/zib-state"
            [repository]
            url = "s3://family-photos/zib"
            region = "eu-central-1"
            [policy]
            volume_size = "512MiB"
            keep_restore_points = 2
            [restore]
            monthly_budget = "50GB"
            [[dataset]]
            name = "tank/photos"
            recursive = true
            [dataset.policy]
            consolidation = "never"
            [[dataset]]
            name = "/mnt/data/docs"
            snapshot_dir = "/mnt/data/.snaps"
            "#,
        )
        .unwrap();
        assert_eq!(config.datasets.len(), 2);
        let photos = config
            .policy
            .overridden_by(&config.datasets[0].policy)
            .policy();
        assert_eq!(photos.consolidation, ConsolidationMode::Never);
        assert_eq!(photos.volume_size, 512 << 20);
        assert_eq!(photos.keep_restore_points, 2);
        let docs = config
            .policy
            .overridden_by(&config.datasets[1].policy)
            .policy();
        assert_eq!(docs.consolidation, ConsolidationMode::Auto);
        assert_eq!(config.restore.monthly_budget, Some(SizeValue(50 << 30)));
    }

    #[test]
    fn a_request_timeout_is_a_duration_and_never_zero() {
        let parse = |value: &str| {
            toml::from_str::<Config>(&format!(
                "[repository]\nurl = \"x\"\nrequest_timeout = \"{value}\"\n"
            ))
        };
        let config = parse("10m").unwrap();
        assert_eq!(
            config.repository.unwrap().request_timeout,
            Some(DurationValue(std::time::Duration::from_secs(600)))
        );
        assert!(parse("0s").is_err());
        assert!(parse("fast").is_err());
    }

    #[test]
    fn typos_are_refused_not_ignored() {
        assert!(toml::from_str::<Config>("[repository]\nurl = \"x\"\nregoin = \"y\"\n").is_err());
        assert!(toml::from_str::<Config>("[policy]\nvolume_size = \"lots\"\n").is_err());
    }

    #[test]
    fn the_initial_config_reads_back() {
        let repository = RepositoryConfig {
            url: "s3://b/p \"q\"".into(),
            endpoint_url: Some("http://127.0.0.1:9000".into()),
            region: Some("us-east-1".into()),
            profile: None,
            path_style: Some(true),
            request_timeout: None,
        };
        let text = initial_text(&repository, Some(Path::new("/root/.zib-passphrase")));
        let config: Config = toml::from_str(&text).unwrap();
        assert_eq!(
            config.passphrase_file.as_deref(),
            Some(Path::new("/root/.zib-passphrase"))
        );
        let read = config.repository.unwrap();
        assert_eq!(read.url, repository.url);
        assert_eq!(read.endpoint_url, repository.endpoint_url);
        assert_eq!(read.path_style, Some(true));
    }
}
