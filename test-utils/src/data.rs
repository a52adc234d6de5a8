//! Deterministic file trees for round-trip tests, and a hash of a tree to compare them.
//!
//! Trees hold names with spaces and (where asked) unicode, nested directories, empty
//! files, a symlink and files of a few hundred KiB — a few MiB in all, so suites stay quick.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Which file names a tree may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Printable ASCII with spaces.
    Ascii,
    /// Also unicode (accents, CJK, emoji): for file systems that store any bytes.
    Unicode,
}

/// A small deterministic pseudo-random generator (splitmix64): test data must be
/// reproducible from a seed, and need not be cryptographic.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        TestRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

fn file_names(names: Names) -> Vec<&'static str> {
    let mut list = vec![
        "plain.txt",
        "with space.txt",
        "  leading and trailing  ",
        "dots.in.name.tar.gz",
        "empty",
    ];
    if names == Names::Unicode {
        list.extend([
            "Fotos für Oma.jpg",
            "日本語のファイル",
            "emoji 📷 album",
            "naïve café",
        ]);
    }
    list
}

/// Writes a tree of a little over 2 MiB under `root` (which must exist), chosen by `seed`.
///
/// # Errors
///
/// Any error from creating the files.
pub fn write_tree(root: &Path, seed: u64, names: Names) -> io::Result<()> {
    let mut rng = TestRng::new(seed);
    let dirs = match names {
        Names::Ascii => vec!["", "sub dir", "sub dir/deeper level", "photos 2024"],
        Names::Unicode => vec![
            "",
            "sub dir",
            "sub dir/deeper level",
            "Fotos 2024 ü",
            "写真/夏 休み",
        ],
    };
    for dir in &dirs {
        fs::create_dir_all(root.join(dir))?;
        for name in file_names(names) {
            let len = match name {
                "empty" => 0,
                _ => rng.below(96 * 1024) as usize,
            };
            fs::write(root.join(dir).join(name), rng.bytes(len))?;
        }
    }
    // Files big enough that a send takes more than one pipe buffer.
    fs::write(root.join("big file.bin"), rng.bytes(1024 * 1024 + 17))?;
    fs::write(
        root.join("sub dir").join("second big.bin"),
        rng.bytes(512 * 1024),
    )?;
    std::os::unix::fs::symlink("sub dir/plain.txt", root.join("link to plain"))?;
    let script = root.join("script.sh");
    fs::write(&script, b"#!/bin/sh\necho hi\n")?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Changes a tree written by [`write_tree`] the way a day of use would: rewrites part of a
/// big file, adds, deletes and renames files.
///
/// # Errors
///
/// Any error from changing the files.
pub fn modify_tree(root: &Path, seed: u64) -> io::Result<()> {
    let mut rng = TestRng::new(seed ^ 0x5eed);
    let big = root.join("big file.bin");
    let mut content = fs::read(&big)?;
    let start = rng.below(content.len() as u64 / 2) as usize;
    let patch = rng.bytes(64 * 1024);
    content[start..start + patch.len()].copy_from_slice(&patch);
    fs::write(&big, content)?;
    fs::write(
        root.join(format!("new file {seed}.dat")),
        rng.bytes(200 * 1024),
    )?;
    let removed = root.join("dots.in.name.tar.gz");
    if removed.exists() {
        fs::remove_file(removed)?;
    }
    let renamed = root.join("with space.txt");
    if renamed.exists() {
        fs::rename(renamed, root.join(format!("renamed with space {seed}.txt")))?;
    }
    fs::create_dir_all(root.join(format!("new dir {seed}")))?;
    Ok(())
}

/// A description of every entry under `root`: relative path → kind, mode and content
/// hash (SHA-256 of a file's bytes, a symlink's target). Two trees are byte-identical
/// when their hashes are equal. Names that are not UTF-8 are kept lossily but still
/// distinguished by their bytes' debug form.
///
/// # Errors
///
/// Any error from reading the tree.
pub fn hash_tree(root: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    hash_dir(root, root, &mut out)?;
    Ok(out)
}

fn hash_dir(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = format!("{:?}", path.strip_prefix(root).unwrap_or(&path));
        let metadata = fs::symlink_metadata(&path)?;
        let mode = metadata.permissions().mode() & 0o7777;
        if metadata.file_type().is_symlink() {
            out.insert(relative, format!("symlink -> {:?}", fs::read_link(&path)?));
        } else if metadata.is_dir() {
            out.insert(relative, format!("dir {mode:o}"));
            hash_dir(root, &path, out)?;
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, &fs::read(&path)?);
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            out.insert(relative, format!("file {mode:o} {} {hex}", metadata.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_deterministic_and_changes_show_in_the_hash() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_tree(a.path(), 7, Names::Unicode).unwrap();
        write_tree(b.path(), 7, Names::Unicode).unwrap();
        let hash_a = hash_tree(a.path()).unwrap();
        assert_eq!(hash_a, hash_tree(b.path()).unwrap());
        assert!(hash_a.keys().any(|name| name.contains("日本語")));
        assert!(hash_a.keys().any(|name| name.contains("with space")));
        modify_tree(b.path(), 7).unwrap();
        assert_ne!(hash_a, hash_tree(b.path()).unwrap());
        let ascii = tempfile::tempdir().unwrap();
        write_tree(ascii.path(), 7, Names::Ascii).unwrap();
        assert!(hash_tree(ascii.path())
            .unwrap()
            .keys()
            .all(|name| name.is_ascii()));
    }
}
