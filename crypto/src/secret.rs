//! zib's own secret bytes: the passphrase and the data key, plus the key id that names
//! a data key.
//!
//! Secrets here are held in [`Zeroizing`] buffers (wiped on drop), are not `Clone` (a
//! copy is a second place to forget), and print as `<redacted>` in `Debug`. Key schedules
//! inside `ring` and the scrypt crate's working memory are outside this guarantee.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length in bytes of a data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;
/// Length in bytes of a key id.
pub const KEY_ID_LEN: usize = 16;

/// A passphrase, as the exact bytes the user typed (UTF-8 for a `String`).
///
/// No Unicode normalisation is applied: the same characters typed as different code
/// point sequences are different passphrases (see `docs/FORMAT.md`).
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Takes ownership of `passphrase`; its buffer is wiped when this value is dropped.
    pub fn new(passphrase: String) -> Self {
        Self(Zeroizing::new(passphrase.into_bytes()))
    }

    /// Takes ownership of raw passphrase bytes.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Passphrase {
    fn from(passphrase: String) -> Self {
        Self::new(passphrase)
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Names a data key: 16 random bytes drawn when the key is created, recorded in the
/// keyring, in every volume header and in every sealed record. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Wraps raw key id bytes.
    pub const fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key id bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The repository's data key: 256 random bits from which every volume key and the
/// record key are derived, and its [`KeyId`].
///
/// Obtained from [`Keyring::create`](crate::Keyring::create) or
/// [`Keyring::unlock`](crate::Keyring::unlock).
pub struct DataKey {
    id: KeyId,
    secret: Zeroizing<[u8; DATA_KEY_LEN]>,
}

impl DataKey {
    /// Draws a new random data key and key id from the system random number generator.
    ///
    /// # Errors
    /// [`Error::Random`] if the system generator fails.
    pub fn generate() -> Result<Self> {
        let rng = SystemRandom::new();
        let mut secret = Zeroizing::new([0u8; DATA_KEY_LEN]);
        rng.fill(secret.as_mut()).map_err(|_| Error::Random)?;
        let mut id = [0u8; KEY_ID_LEN];
        rng.fill(&mut id).map_err(|_| Error::Random)?;
        Ok(Self {
            id: KeyId(id),
            secret,
        })
    }

    /// Builds a data key from known bytes. Production keys come from a keyring; this is
    /// for test vectors and recovery tools.
    pub fn from_secret_bytes(id: KeyId, secret: Zeroizing<[u8; DATA_KEY_LEN]>) -> Self {
        Self { id, secret }
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.secret
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}
