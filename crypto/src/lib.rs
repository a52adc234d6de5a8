//! zib format v1 cryptography.
//!
//! Owns:
//! - the **keyring** ([`Keyring`]): a random 256-bit data key, named by a [`KeyId`],
//!   wrapped with AES-256-GCM under a key-encryption key derived from the passphrase
//!   with scrypt;
//! - the **streaming encryption of volumes** ([`VolumeEncryptor`], [`VolumeDecryptor`],
//!   [`encrypt_stream`], [`decrypt_stream`]): a plaintext header, then 64 KiB segments
//!   sealed with AES-256-GCM under a volume key derived (HKDF-SHA256) from the data key,
//!   a fresh random salt per upload attempt and the volume's identity, with the
//!   size arithmetic the engine needs to cut multipart parts on segment boundaries;
//! - **sealed records** for small metadata that must fit in S3 user metadata.
//!
//! The byte layouts are normative and specified in `docs/FORMAT.md`; the test vectors
//! under `crypto/tests/vectors/` and the reference decoder in `docs/reference/` pin them.
//!
//! Deliberately not here: any I/O beyond the byte streams it is handed, where objects
//! live in the bucket, what records contain, passphrase prompting. Those belong to the
//! engine and the CLI.
//!
//! # Example
//!
//! ```
//! use zib_crypto::{
//!     ciphertext_len, open_keyring, KdfParams, Keyring, Passphrase, VolumeDecryptor,
//!     VolumeEncryptor, VolumeIdentity, VolumeSalt,
//! };
//! # fn main() -> zib_crypto::Result<()> {
//! // A low scrypt cost keeps the example quick; real keyrings use KdfParams::DEFAULT.
//! let params = KdfParams::new(10, 8, 1)?;
//! let (keyring, key) = Keyring::create(&Passphrase::new("correct horse".into()), params)?;
//! let stored: Vec<u8> = keyring.to_bytes();
//!
//! let volume = VolumeIdentity { repository_id: [1; 16], backup_id: [2; 16], volume_index: 0 };
//! let salt = VolumeSalt::generate()?; // journal it before the upload starts
//! let mut encryptor = VolumeEncryptor::new(&key, volume, &salt)?;
//! let mut ciphertext = encryptor.push(b"zfs send output")?.to_vec();
//! ciphertext.extend_from_slice(&encryptor.finish()?);
//! assert_eq!(ciphertext.len() as u64, ciphertext_len(15));
//!
//! let key = open_keyring(&stored, &Passphrase::new("correct horse".into()))?;
//! let mut decryptor = VolumeDecryptor::new(&key, volume);
//! let mut plaintext = decryptor.push(&ciphertext)?.to_vec();
//! plaintext.extend_from_slice(&decryptor.finish()?); // only now is the volume complete
//! assert_eq!(plaintext, b"zfs send output");
//! # Ok(()) }
//! ```
//!
//! Secrets: the passphrase, the key-encryption key, the data key and the copies this
//! crate makes of them are held in `Zeroizing` buffers, are not `Clone` and print as
//! `<redacted>`. Derived volume and record keys go straight from ring's HKDF into ring's
//! AES key type and never sit in a buffer of ours. The key schedules inside `ring` and
//! the working memory of the `scrypt` crate are outside that guarantee: they are not
//! wiped on drop.

mod error;
#[doc(hidden)]
pub mod fuzz_targets;
mod keyring;
mod record;
mod secret;
mod stream;
mod volume;

pub use error::{Error, Result};
pub use keyring::{
    change_passphrase, open_keyring, KdfParams, Keyring, KEYRING_LEN, KEYRING_MAGIC,
    KEYRING_VERSION,
};
pub use record::{
    open_record, seal_record, seal_record_with_nonce, sealed_record_len, RecordContext,
    MAX_RECORD_TYPE_LEN, RECORD_OVERHEAD, RECORD_VERSION,
};
pub use secret::{DataKey, KeyId, Passphrase, DATA_KEY_LEN, KEY_ID_LEN};
pub use stream::{decrypt_stream, encrypt_stream, DecryptStream, EncryptStream};
pub use volume::{
    ciphertext_len, plaintext_len, plaintext_per_part, segment_offset, VolumeDecryptor,
    VolumeEncryptor, VolumeHeader, VolumeIdentity, VolumeSalt, HEADER_LEN, SALT_LEN,
    SEGMENT_CIPHERTEXT_LEN, SEGMENT_LEN, TAG_LEN, VOLUME_MAGIC, VOLUME_VERSION,
};
