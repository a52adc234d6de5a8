//! Where the passphrase comes from — never an argument (argv is visible to every user
//! of the machine in `ps`): a file (`--passphrase-file`, `ZIB_PASSPHRASE_FILE`, the
//! config's `passphrase_file`), the environment (`ZIB_PASSPHRASE`), or a prompt without
//! echo on the terminal (asked twice when a new passphrase is chosen).
//!
//! The text read is moved into a [`Passphrase`], whose buffer is wiped when dropped;
//! intermediate copies are `Zeroizing`.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;
use zib_engine::Passphrase;

use crate::exit::{CliError, Exit};

/// Where a passphrase is looked for, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// A file named by a flag or the environment.
    pub(crate) file: Option<PathBuf>,
    /// A file the config names (after the environment's passphrase: the environment of
    /// one run beats the standing config).
    pub(crate) config_file: Option<PathBuf>,
    /// The environment variable holding the passphrase itself.
    pub(crate) env: &'static str,
    /// What the prompt asks for.
    pub(crate) prompt: &'static str,
}

/// Reads the passphrase; `confirm` asks a prompt twice (a new passphrase).
pub(crate) fn read(sources: &Sources, confirm: bool) -> Result<Passphrase, CliError> {
    if let Some(file) = &sources.file {
        return from_file(file);
    }
    if let Some(value) = std::env::var_os(sources.env) {
        let text = Zeroizing::new(
            value
                .into_string()
                .map_err(|_| CliError::usage(format!("{} is not valid UTF-8", sources.env)))?,
        );
        return non_empty(Zeroizing::new(text.as_bytes().to_vec()), sources.env);
    }
    if let Some(file) = &sources.config_file {
        return from_file(file);
    }
    prompt(sources, confirm)
}

fn from_file(file: &Path) -> Result<Passphrase, CliError> {
    let bytes = Zeroizing::new(std::fs::read(file).map_err(|error| {
        CliError::new(
            Exit::Error,
            format!("could not read the passphrase file {}: {error}", file.display()),
        )
        .hint("check the path (--passphrase-file, ZIB_PASSPHRASE_FILE or the config's passphrase_file)")
    })?);
    if let Ok(metadata) = std::fs::metadata(file) {
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the passphrase file {} can be read by other users (mode {:o}); make it \
                 private: chmod 600 {}",
                file.display(),
                metadata.permissions().mode() & 0o777,
                file.display()
            );
        }
    }
    // One trailing newline (as `echo` writes) is not part of the passphrase.
    let mut text = Zeroizing::new(bytes.to_vec());
    if text.last() == Some(&b'\n') {
        text.pop();
        if text.last() == Some(&b'\r') {
            text.pop();
        }
    }
    non_empty(text, &file.display().to_string())
}

fn non_empty(bytes: Zeroizing<Vec<u8>>, from: &str) -> Result<Passphrase, CliError> {
    if bytes.is_empty() {
        return Err(CliError::usage(format!(
            "the passphrase from {from} is empty"
        )));
    }
    Ok(Passphrase::from_bytes(bytes))
}

fn prompt(sources: &Sources, confirm: bool) -> Result<Passphrase, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "no passphrase: there is no terminal to ask on, and neither a passphrase file nor {} is set",
            sources.env
        ))
        .hint("use --passphrase-file FILE (or ZIB_PASSPHRASE_FILE, or the config's passphrase_file)"));
    }
    let ask = |text: &str| {
        rpassword::prompt_password(text)
            .map(Zeroizing::new)
            .map_err(|error| {
                CliError::new(
                    Exit::Error,
                    format!("could not read the passphrase: {error}"),
                )
            })
    };
    let first = ask(&format!("{}: ", sources.prompt))?;
    if confirm {
        let second = ask("Type it again: ")?;
        if *first != *second {
            return Err(CliError::usage(
                "the two passphrases differ; nothing was changed",
            ));
        }
    }
    non_empty(Zeroizing::new(first.as_bytes().to_vec()), "the prompt")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_file_is_read_without_its_trailing_newline_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "two words\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Opening a keyring proves the bytes; here the round trip through a keyring does.
        let passphrase = from_file(&file).unwrap();
        let params = zib_engine::crypto::KdfParams::new(10, 8, 1).unwrap();
        let (keyring, _) = zib_engine::crypto::Keyring::create(&passphrase, params).unwrap();
        assert!(keyring.unlock(&Passphrase::new("two words".into())).is_ok());
        let missing = from_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing
            .message
            .contains("could not read the passphrase file"));
        std::fs::write(&file, "\n").unwrap();
        assert!(from_file(&file).unwrap_err().message.contains("empty"));
    }
}
