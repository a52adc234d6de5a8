//! The keyring: the data key wrapped (AES-256-GCM) under a key-encryption key derived
//! from the passphrase with scrypt. Byte layout: `docs/FORMAT.md`, section "Keyring".

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{DataKey, KeyId, Passphrase, DATA_KEY_LEN, KEY_ID_LEN};

/// First 8 bytes of every keyring.
pub const KEYRING_MAGIC: [u8; 8] = *b"ZIB-KEY\n";
/// Keyring format version written by this code.
pub const KEYRING_VERSION: u16 = 1;
/// Exact length of a v1 keyring in bytes.
pub const KEYRING_LEN: usize = 160;

const KDF_SCRYPT: u8 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

// Field offsets (see FORMAT.md).
const OFF_VERSION: usize = 8;
const OFF_KEY_ID: usize = 10;
const OFF_KDF: usize = 26;
const OFF_LOG2_N: usize = 27;
const OFF_R: usize = 28;
const OFF_P: usize = 32;
const OFF_SALT: usize = 36;
const OFF_NONCE: usize = 68;
const OFF_WRAPPED: usize = 80;
pub(crate) const OFF_CHECKSUM: usize = 128;

/// scrypt cost parameters.
///
/// v1 readers accept, forever, `log2_n ≤ 20`, `r ≤ 16`, `p ≤ 4` and `128·N·r ≤ 1 GiB`,
/// and refuse anything above as corrupt, so a hostile keyring cannot make a reader hang
/// or exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    log2_n: u8,
    r: u32,
    p: u32,
}

impl KdfParams {
    /// The v1 default cost: log2 N = 17, r = 8, p = 1 (128 MiB of memory). Fixed, not
    /// calibrated per machine, so every machine that must open the keyring can.
    pub const DEFAULT: Self = Self {
        log2_n: 17,
        r: 8,
        p: 1,
    };

    /// Largest accepted log2 N.
    pub const MAX_LOG2_N: u8 = 20;
    /// Largest accepted r.
    pub const MAX_R: u32 = 16;
    /// Largest accepted p.
    pub const MAX_P: u32 = 4;
    /// Largest accepted scrypt memory, 128·N·r bytes.
    pub const MAX_MEMORY: u64 = 1 << 30;

    /// Validated cost parameters. Costs below the default are allowed (tests use them);
    /// a real keyring should use [`KdfParams::DEFAULT`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a value is zero or above the v1 ceiling.
    pub fn new(log2_n: u8, r: u32, p: u32) -> Result<Self> {
        Self::check(log2_n, r, p).map_err(|reason| Error::InvalidArgument(reason.to_owned()))
    }

    fn check(log2_n: u8, r: u32, p: u32) -> Result<Self, &'static str> {
        if log2_n == 0 || log2_n > Self::MAX_LOG2_N {
            return Err("scrypt log2 N must be between 1 and 20");
        }
        if r == 0 || r > Self::MAX_R {
            return Err("scrypt r must be between 1 and 16");
        }
        if p == 0 || p > Self::MAX_P {
            return Err("scrypt p must be between 1 and 4");
        }
        if 128 * (1u64 << log2_n) * u64::from(r) > Self::MAX_MEMORY {
            return Err("scrypt memory 128*N*r exceeds 1 GiB");
        }
        Ok(Self { log2_n, r, p })
    }

    /// log2 of the scrypt cost N.
    pub fn log2_n(&self) -> u8 {
        self.log2_n
    }
    /// scrypt block size r.
    pub fn r(&self) -> u32 {
        self.r
    }
    /// scrypt parallelism p.
    pub fn p(&self) -> u32 {
        self.p
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A parsed, checksum-verified keyring. Not yet unlocked: [`Keyring::unlock`] takes the
/// passphrase.
///
/// Changing the passphrase ([`Keyring::wrap`] / [`change_passphrase`]) re-wraps the same
/// data key. It does not revoke a leaked old passphrase or an old copy of the keyring:
/// whoever holds both can still unwrap the data key. Revocation needs a new data key
/// (a new key id) and re-encrypted data.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    bytes: [u8; KEYRING_LEN],
    params: KdfParams,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_id", &self.key_id())
            .field("kdf", &self.params)
            .finish_non_exhaustive()
    }
}

fn corrupt(reason: impl Into<String>) -> Error {
    Error::CorruptKeyring {
        reason: reason.into(),
    }
}

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(b)
}

impl Keyring {
    /// Creates a new random data key and wraps it under `passphrase`.
    ///
    /// Returns the keyring (store it with [`Keyring::to_bytes`]) and the open data key.
    ///
    /// # Errors
    /// [`Error::Random`] if the system random generator fails.
    pub fn create(passphrase: &Passphrase, params: KdfParams) -> Result<(Keyring, DataKey)> {
        let key = DataKey::generate()?;
        let keyring = Self::wrap(&key, passphrase, params)?;
        Ok((keyring, key))
    }

    /// Wraps an existing data key under `passphrase` with a fresh scrypt salt and nonce.
    /// This is how the passphrase is changed: no data is re-encrypted.
    ///
    /// # Errors
    /// [`Error::Random`] if the system random generator fails.
    pub fn wrap(key: &DataKey, passphrase: &Passphrase, params: KdfParams) -> Result<Keyring> {
        let rng = SystemRandom::new();
        let mut salt = [0u8; SALT_LEN];
        rng.fill(&mut salt).map_err(|_| Error::Random)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| Error::Random)?;
        Self::wrap_with(key, passphrase, params, &salt, &nonce)
    }

    /// Deterministic core of [`Keyring::wrap`]; the salt and nonce MUST be fresh random
    /// values except when producing test vectors.
    #[doc(hidden)]
    pub fn wrap_with(
        key: &DataKey,
        passphrase: &Passphrase,
        params: KdfParams,
        salt: &[u8; SALT_LEN],
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Keyring> {
        let mut bytes = [0u8; KEYRING_LEN];
        bytes[..8].copy_from_slice(&KEYRING_MAGIC);
        bytes[OFF_VERSION..OFF_KEY_ID].copy_from_slice(&KEYRING_VERSION.to_le_bytes());
        bytes[OFF_KEY_ID..OFF_KDF].copy_from_slice(key.id().as_bytes());
        bytes[OFF_KDF] = KDF_SCRYPT;
        bytes[OFF_LOG2_N] = params.log2_n;
        bytes[OFF_R..OFF_P].copy_from_slice(&params.r.to_le_bytes());
        bytes[OFF_P..OFF_SALT].copy_from_slice(&params.p.to_le_bytes());
        bytes[OFF_SALT..OFF_NONCE].copy_from_slice(salt);
        bytes[OFF_NONCE..OFF_WRAPPED].copy_from_slice(nonce);

        let kek = key_encryption_key(passphrase, params, salt)?;
        let (aad, rest) = bytes.split_at_mut(OFF_WRAPPED);
        let wrapped = &mut rest[..OFF_CHECKSUM - OFF_WRAPPED];
        wrapped[..DATA_KEY_LEN].copy_from_slice(key.secret());
        let tag = kek
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(&aad[..]),
                &mut wrapped[..DATA_KEY_LEN],
            )
            .map_err(|_| Error::InvalidArgument("key wrapping failed".into()))?;
        wrapped[DATA_KEY_LEN..].copy_from_slice(tag.as_ref());
        let sum = digest(&SHA256, &bytes[..OFF_CHECKSUM]);
        bytes[OFF_CHECKSUM..].copy_from_slice(sum.as_ref());
        Ok(Keyring { bytes, params })
    }

    /// Parses and checks a keyring without the passphrase: magic, version, length,
    /// checksum, and KDF parameters within the v1 ceiling.
    ///
    /// # Errors
    /// [`Error::CorruptKeyring`] on any failed check; [`Error::UnsupportedVersion`] for a
    /// keyring written by a newer format version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring> {
        if bytes.len() < OFF_KEY_ID {
            return Err(corrupt(format!(
                "{} bytes is too short to be a keyring",
                bytes.len()
            )));
        }
        if bytes[..8] != KEYRING_MAGIC {
            return Err(corrupt(
                "it does not start with the keyring magic \"ZIB-KEY\\n\"",
            ));
        }
        let version = u16::from_le_bytes([bytes[OFF_VERSION], bytes[OFF_VERSION + 1]]);
        if version == 0 {
            return Err(corrupt("format version 0 does not exist"));
        }
        if version > KEYRING_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "keyring",
                version,
            });
        }
        let bytes: [u8; KEYRING_LEN] = bytes.try_into().map_err(|_| {
            corrupt(format!(
                "a v1 keyring is exactly {KEYRING_LEN} bytes, this one is {}",
                bytes.len()
            ))
        })?;
        let sum = digest(&SHA256, &bytes[..OFF_CHECKSUM]);
        if sum.as_ref() != &bytes[OFF_CHECKSUM..] {
            return Err(corrupt("its SHA-256 checksum does not match its contents"));
        }
        if bytes[OFF_KDF] != KDF_SCRYPT {
            return Err(corrupt(format!("unknown KDF id {}", bytes[OFF_KDF])));
        }
        let params = KdfParams::check(
            bytes[OFF_LOG2_N],
            le_u32(&bytes, OFF_R),
            le_u32(&bytes, OFF_P),
        )
        .map_err(|reason| corrupt(format!("KDF parameters out of the v1 range: {reason}")))?;
        Ok(Keyring { bytes, params })
    }

    /// The serialized keyring (exactly [`KEYRING_LEN`] bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// The id of the wrapped data key.
    pub fn key_id(&self) -> KeyId {
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&self.bytes[OFF_KEY_ID..OFF_KDF]);
        KeyId::from_bytes(id)
    }

    /// The scrypt cost recorded in the keyring.
    pub fn kdf_params(&self) -> KdfParams {
        self.params
    }

    /// Derives the key-encryption key from `passphrase` (scrypt, at the recorded cost)
    /// and unwraps the data key.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] if the passphrase does not unwrap the key (or the
    /// keyring was altered and its checksum recomputed).
    pub fn unlock(&self, passphrase: &Passphrase) -> Result<DataKey> {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&self.bytes[OFF_SALT..OFF_NONCE]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.bytes[OFF_NONCE..OFF_WRAPPED]);
        let kek = key_encryption_key(passphrase, self.params, &salt)?;
        let mut wrapped = Zeroizing::new([0u8; DATA_KEY_LEN + TAG_LEN]);
        wrapped.copy_from_slice(&self.bytes[OFF_WRAPPED..OFF_CHECKSUM]);
        let plain = kek
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.bytes[..OFF_WRAPPED]),
                wrapped.as_mut(),
            )
            .map_err(|_| Error::WrongPassphrase)?;
        let mut secret = Zeroizing::new([0u8; DATA_KEY_LEN]);
        secret.copy_from_slice(plain);
        Ok(DataKey::from_secret_bytes(self.key_id(), secret))
    }
}

/// Opens `keyring_bytes` with `passphrase`.
///
/// # Errors
/// [`Error::CorruptKeyring`], [`Error::UnsupportedVersion`] or
/// [`Error::WrongPassphrase`], as for [`Keyring::from_bytes`] and [`Keyring::unlock`].
pub fn open_keyring(keyring_bytes: &[u8], passphrase: &Passphrase) -> Result<DataKey> {
    Keyring::from_bytes(keyring_bytes)?.unlock(passphrase)
}

/// Re-wraps the data key of `keyring_bytes` under `new` (with a fresh salt, at cost
/// `params`, normally [`KdfParams::DEFAULT`]) and returns the new keyring bytes. The key
/// id and data key stay the same, so no data is re-encrypted. See [`Keyring`] for what
/// this does not revoke.
///
/// # Errors
/// As [`open_keyring`] for the old keyring and passphrase; [`Error::Random`] if the
/// system random generator fails.
pub fn change_passphrase(
    keyring_bytes: &[u8],
    old: &Passphrase,
    new: &Passphrase,
    params: KdfParams,
) -> Result<Vec<u8>> {
    let key = open_keyring(keyring_bytes, old)?;
    Ok(Keyring::wrap(&key, new, params)?.to_bytes())
}

fn key_encryption_key(
    passphrase: &Passphrase,
    params: KdfParams,
    salt: &[u8; SALT_LEN],
) -> Result<LessSafeKey> {
    let scrypt_params = scrypt::Params::new(params.log2_n, params.r, params.p)
        .map_err(|_| Error::InvalidArgument("scrypt parameters refused".into()))?;
    let mut kek = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.as_bytes(), salt, &scrypt_params, kek.as_mut())
        .map_err(|_| Error::InvalidArgument("scrypt output length refused".into()))?;
    let unbound = UnboundKey::new(&AES_256_GCM, kek.as_ref())
        .map_err(|_| Error::InvalidArgument("key length refused".into()))?;
    Ok(LessSafeKey::new(unbound))
}
