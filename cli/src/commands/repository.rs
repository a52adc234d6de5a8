//! The repository itself: `init`, `key export`, `key recover`, `passwd`, `cleanup`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context as _;
use serde_json::json;
use zib_engine::crypto::KdfParams;
use zib_engine::storage::StorageClass;
use zib_engine::{
    ArchivedKeyring, CleanupOptions, InitOptions, LifecycleStatus, OfflineCopyOptions, Repository,
};

use super::Outcome;
use crate::app::App;
use crate::args::{CleanupArgs, InitArgs, PasswdArgs};
use crate::config::{self, RepositoryConfig};
use crate::exit::{CliError, Exit};
use crate::passphrase::{self, Sources};

pub(super) async fn init(app: &App, args: &InitArgs) -> anyhow::Result<Outcome> {
    let mut repository = RepositoryConfig {
        url: args.url.clone(),
        ..RepositoryConfig::default()
    };
    app.apply_flags(&mut repository);
    if let Some(existing) = app.config.as_ref().and_then(|c| c.repository.as_ref()) {
        if existing.url != args.url {
            return Err(CliError::usage(format!(
                "the config file {} already names the repository {}",
                app.config_path.path.display(),
                existing.url
            ))
            .hint("name another config file with --config (or ZIB_CONFIG) for a second repository")
            .into());
        }
    }
    let archive_class = match &args.storage_class {
        None => StorageClass::DeepArchive,
        Some(name) => match StorageClass::from_name(&name.to_ascii_uppercase()) {
            StorageClass::Other(_) => return Err(CliError::usage(format!(
                "{name:?} is not an S3 storage class"
            ))
            .hint("use DEEP_ARCHIVE (the default), GLACIER, GLACIER_IR, STANDARD_IA or STANDARD")
            .into()),
            class => class,
        },
    };
    if !args.url.starts_with("s3://") {
        // A local repository's directory is created (an external disk's mount must exist).
        let dir = args.url.strip_prefix("file://").unwrap_or(&args.url);
        if !dir.is_empty() && !dir.contains("://") {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create the repository directory {dir}"))?;
        }
    }
    let location = app.location(&repository).await?;
    let sources = Sources {
        prompt: "Choose a passphrase (long; it cannot be recovered)",
        ..app.passphrase_sources()
    };
    let passphrase = passphrase::read(&sources, true)?;
    let options = InitOptions {
        archive_class,
        kdf: KdfParams::default(),
    };
    let (opened, report) = Repository::init(&location, &passphrase, &options, app.host())
        .await
        .map_err(|error| {
            anyhow::Error::new(error)
                .context(format!("could not create a repository at {}", args.url))
        })?;

    let config_written = if app.config.is_none() {
        write_config(app, &repository, sources.file.as_deref())?;
        true
    } else {
        false
    };
    app.say(format!(
        "Created repository {} at {} ({}).",
        opened.id(),
        args.url,
        opened.archive_class()
    ));
    if config_written {
        app.say(format!(
            "Wrote the config file {}.",
            app.config_path.path.display()
        ));
    }
    let warnings: Vec<String> = report
        .access
        .warnings
        .iter()
        .map(|warning| warning.message.clone())
        .chain(report.lifecycle.warning().map(str::to_owned))
        .collect();
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let lifecycle = match &report.lifecycle {
        LifecycleStatus::Set { .. } => "set",
        LifecycleStatus::Present { .. } => "present",
        LifecycleStatus::Missing { .. } => "missing",
        LifecycleStatus::Unknown { .. } => "unknown",
        LifecycleStatus::NotApplicable { .. } => "not_applicable",
        _ => "unknown",
    };
    app.say(format!(
        "Every permission zib needs was checked ({} steps passed).",
        report.access.passed.len()
    ));
    app.say(
        "Keep an offline copy of the keyring: without the keyring and the passphrase nothing \
         can be restored.\nWrite it to a USB stick (or print it) with:  zib key export DIR",
    );
    Ok(Outcome::done(json!({
        "repository_id": opened.id().to_string(),
        "url": args.url,
        "storage_class": opened.archive_class().as_str(),
        "config_file": app.config_path.path,
        "config_written": config_written,
        "keyring_archive_key": report.keyring_archive_key,
        "lifecycle_rule": lifecycle,
        "warnings": warnings,
    })))
}

fn write_config(
    app: &App,
    repository: &RepositoryConfig,
    passphrase_file: Option<&Path>,
) -> anyhow::Result<()> {
    let path = &app.config_path.path;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    let passphrase_file = passphrase_file.map(std::path::absolute).transpose()?;
    let text = config::initial_text(repository, passphrase_file.as_deref());
    std::fs::write(path, text)
        .with_context(|| format!("could not write the config file {}", path.display()))?;
    Ok(())
}

pub(super) async fn key_export(app: &App, dir: &Path) -> anyhow::Result<Outcome> {
    let (repository, config) = app.open().await?;
    let keyring = match &app.global.keyring {
        Some(file) => Some(
            std::fs::read(file)
                .with_context(|| format!("could not read the keyring file {}", file.display()))?,
        ),
        None => None,
    };
    let keyring_name = format!("zib-keyring-{}.bin", repository.id());
    let options = OfflineCopyOptions {
        url: config.url.clone(),
        region: config.region.clone(),
        endpoint_url: config.endpoint_url.clone(),
        keyring,
        extra_instructions: vec![
            "With zib:".to_owned(),
            format!("  zib --keyring {keyring_name} list          open the repository with this copy"),
            format!("  zib --keyring {keyring_name} key recover   and put the keyring back in the bucket"),
        ],
    };
    let copy = repository
        .export_offline_copy(dir, &options)
        .await
        .context("could not export the offline copy")?;
    let names: Vec<String> = copy
        .files
        .iter()
        .filter_map(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    app.say(format!(
        "Wrote the keyring of repository {} and a recovery kit ({}) to {}.",
        repository.id(),
        names.join(", "),
        dir.display()
    ));
    app.say(format!(
        "Print {} (the recovery sheet) and keep it with the copy, away from this machine (a USB \
         stick in a drawer); it is useless without the passphrase.",
        zib_engine::SHEET_NAME
    ));
    Ok(Outcome::done(json!({
        "repository_id": repository.id().to_string(),
        "keyring_file": copy.keyring_file,
        "sheet_file": copy.sheet_file,
        "files": names,
    })))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("could not write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("could not make {} private", path.display()))?;
    Ok(())
}

pub(super) async fn key_recover(app: &App, out: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = app.repository_config()?;
    let location = app.location(&config).await?;
    let passphrase = passphrase::read(&app.passphrase_sources(), false)?;
    let (keyring, from) = match &app.global.keyring {
        Some(file) => {
            (
                zeroize::Zeroizing::new(std::fs::read(file).with_context(|| {
                    format!("could not read the keyring file {}", file.display())
                })?),
                file.display().to_string(),
            )
        }
        None => {
            match Repository::fetch_archived_keyring(&location, app.host())
                .await
                .context("could not fetch the archived keyring copy")?
            {
                ArchivedKeyring::Ready { key, keyring } => (zeroize::Zeroizing::new(keyring), key),
                ArchivedKeyring::Thawing { key, requested_now } => {
                    app.say(format!(
                    "The archived keyring copy {key} is thawing{}; run `zib key recover` again \
                     in up to 12 hours.",
                    if requested_now { " (its restore was requested now)" } else { "" }
                ));
                    return Ok(Outcome {
                        exit: Exit::RestoreWaiting,
                        json: json!({ "state": "thawing", "key": key, "requested_now": requested_now }),
                    });
                }
            }
        }
    };
    let repository = Repository::open_with_keyring(&location, &passphrase, &keyring, app.host())
        .await
        .with_context(|| format!("could not open the repository with the keyring from {from}"))?;
    let repair = repository
        .repair_keyring(&keyring)
        .await
        .context("could not put the keyring back")?;
    let saved = match out {
        Some(path) => {
            write_private(path, &keyring)?;
            Some(path.to_owned())
        }
        None => None,
    };
    let state = match repair {
        zib_engine::KeyringRepair::Intact => "intact",
        zib_engine::KeyringRepair::Written => "written",
        zib_engine::KeyringRepair::Replaced => "replaced",
    };
    app.say(match repair {
        zib_engine::KeyringRepair::Intact => format!("The repository's keyring is intact; nothing was written (checked against {from})."),
        _ => format!("The repository's keyring was {state} from {from}; the repository opens normally again."),
    });
    if let Some(path) = &saved {
        app.say(format!("Saved a copy to {}.", path.display()));
    }
    Ok(Outcome::done(json!({
        "state": "ready",
        "from": from,
        "keyring": state,
        "saved_to": saved,
    })))
}

pub(super) async fn passwd(app: &App, args: &PasswdArgs) -> anyhow::Result<Outcome> {
    let old = passphrase::read(&app.passphrase_sources(), false)?;
    let (repository, _) = app.open_with(&old).await?;
    let new = passphrase::read(
        &Sources {
            file: args.new_passphrase_file.clone(),
            config_file: None,
            env: "ZIB_NEW_PASSPHRASE",
            prompt: "New passphrase",
        },
        true,
    )?;
    let change = repository
        .change_passphrase(&old, &new, KdfParams::default())
        .await
        .context("could not change the passphrase")?;
    app.say("The passphrase is changed; no backup was re-uploaded.");
    app.say("Replace your offline keyring copy: zib key export DIR (the old copy opens with the old passphrase only).");
    if app
        .config
        .as_ref()
        .and_then(|c| c.passphrase_file.as_ref())
        .is_some()
    {
        app.say("Update the passphrase file the config names, or unattended runs will fail.");
    }
    Ok(Outcome::done(json!({
        "repository_id": repository.id().to_string(),
        "keyring_archive_key": change.keyring_archive_key,
    })))
}

pub(super) async fn cleanup(app: &App, args: &CleanupArgs) -> anyhow::Result<Outcome> {
    let (repository, _) = app.open().await?;
    let report = repository
        .clean_up(&CleanupOptions {
            dry_run: args.dry_run,
            ..CleanupOptions::default()
        })
        .await
        .context("could not clean up")?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let names = |keys: &[zib_engine::storage::ObjectKey]| -> Vec<String> {
        keys.iter().map(ToString::to_string).collect()
    };
    app.say(format!(
        "{} {} orphan volume(s), {} incomplete upload(s), {} probe(s); kept {} younger than 7 days and {} of backups running now.",
        if args.dry_run { "Would remove" } else { "Removed" },
        report.deleted_volumes.len(),
        report.aborted_uploads.len(),
        report.deleted_probes.len(),
        report.kept_recent,
        report.kept_live
    ));
    for key in report
        .deleted_volumes
        .iter()
        .chain(&report.aborted_uploads)
        .chain(&report.deleted_probes)
    {
        app.say(format!("  {verb} {key}"));
    }
    Ok(Outcome::done(json!({
        "dry_run": args.dry_run,
        "deleted_volumes": names(&report.deleted_volumes),
        "aborted_uploads": names(&report.aborted_uploads),
        "deleted_probes": names(&report.deleted_probes),
        "kept_recent": report.kept_recent,
        "kept_live": report.kept_live,
    })))
}
