//! Validated object keys.

use std::fmt;

use crate::{Error, Result};

/// Longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// An object key that every backend can store unchanged.
///
/// Valid keys are 1 to 1,024 bytes of UTF-8, made of `/`-separated segments that are
/// non-empty and neither `.` nor `..`, without control characters. These rules are the
/// intersection of what S3 stores literally and what a local directory can map to a path
/// that stays inside its root, so a key that works on one backend works on all of them.
/// Spaces and any printable Unicode are allowed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule the key breaks.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        validate(&key)?;
        Ok(ObjectKey(key))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn validate(key: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::invalid(format!(
            "object key {key:?} is not valid: {why}"
        )))
    };
    if key.is_empty() {
        return refuse("it is empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return refuse("it is longer than 1,024 bytes of UTF-8");
    }
    if key.chars().any(char::is_control) {
        return refuse("it contains a control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return refuse("it has an empty segment (leading, trailing or doubled '/')"),
            "." | ".." => return refuse("it has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        ObjectKey::new(value)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        ObjectKey::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spaces_and_unicode() {
        for key in [
            "a",
            "dir with space/file name.bin",
            "日本/ünïcødé ☃",
            "a+b%20c/~x",
            "..a/b..",
            ".hidden",
        ] {
            assert_eq!(ObjectKey::new(key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn refuses_escaping_and_empty_segments() {
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        for key in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "a/./b",
            "a\nb",
            "a\0b",
            long.as_str(),
        ] {
            let err = ObjectKey::new(key).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{key:?}: {err}");
        }
        assert!(ObjectKey::new("x".repeat(MAX_KEY_BYTES)).is_ok());
    }
}
