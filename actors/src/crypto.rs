//! Authenticated encryption of stored secrets (CONTRACT.md §3.9).
//!
//! Wire format of a sealed value, stored as text:
//!
//! ```text
//! v1.<key id>.<base64url without padding of: nonce ‖ ciphertext ‖ tag>
//! ```
//!
//! - `key id`: 16 lower-case hex characters, the first 8 bytes of
//!   SHA-256(`"service-layer key id"` ‖ key). It selects the key from the ring, so old
//!   ciphertexts stay readable after rotation.
//! - 32-byte keys use XChaCha20-Poly1305 (24-byte nonce); 16- and 24-byte keys use
//!   AES-128-GCM / AES-192-GCM (12-byte nonce). Nonces are random per encryption; the tag
//!   is 16 bytes.
//! - Associated data binds a ciphertext to its row (for secrets
//!   `secret:v1:<account id>:<lower-case name>:<version>`), so a ciphertext copied to
//!   another account, name or version fails to decrypt.

use crate::ids::AccountId;
use aes_gcm::aead::consts::U12;
use aes_gcm::aes::{Aes128, Aes192};
use aes_gcm::AesGcm;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD,
};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chacha20poly1305::aead::rand_core::RngCore as _;
use chacha20poly1305::aead::{generic_array::GenericArray, Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use sha2::{Digest, Sha256};
use std::fmt;

type Aes128Gcm = AesGcm<Aes128, U12>;
type Aes192Gcm = AesGcm<Aes192, U12>;

const FORMAT_VERSION: &str = "v1";

/// Identifies a key without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"service-layer key id")
            .chain_update(key)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }

    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 16 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut id = [0u8; 8];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(Self(id))
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

enum Cipher {
    XChaCha(Box<XChaCha20Poly1305>),
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
}

/// One encryption key. `Debug` shows only its id.
pub struct Key {
    id: KeyId,
    cipher: Cipher,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is not in the v1 format")]
    Malformed,
    #[error("ciphertext was sealed with key {0}, which is not in the key ring")]
    UnknownKey(KeyId),
    #[error("ciphertext failed authentication (tampered, or bound to another row)")]
    Authentication,
    #[error("encryption failed")]
    Encryption,
}

impl From<CryptoError> for crate::error::StoreError {
    fn from(err: CryptoError) -> Self {
        Self::internal(err)
    }
}

impl Key {
    /// A 16-, 24- or 32-byte key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let cipher = match bytes.len() {
            32 => Cipher::XChaCha(Box::new(XChaCha20Poly1305::new(GenericArray::from_slice(
                bytes,
            )))),
            16 => Cipher::Aes128(Box::new(Aes128Gcm::new(GenericArray::from_slice(bytes)))),
            24 => Cipher::Aes192(Box::new(Aes192Gcm::new(GenericArray::from_slice(bytes)))),
            n => return Err(format!("key is {n} bytes; expected 16, 24 or 32")),
        };
        Ok(Self {
            id: KeyId::of(bytes),
            cipher,
        })
    }

    /// A fresh random 32-byte key (memory mode without a configured key).
    pub fn generate() -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        Self {
            id: KeyId::of(bytes.as_ref()),
            cipher: Cipher::XChaCha(Box::new(XChaCha20Poly1305::new(GenericArray::from_slice(
                bytes.as_ref(),
            )))),
        }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    fn nonce_len(&self) -> usize {
        match self.cipher {
            Cipher::XChaCha(_) => 24,
            Cipher::Aes128(_) | Cipher::Aes192(_) => 12,
        }
    }

    fn encrypt(&self, nonce: &[u8], payload: Payload<'_, '_>) -> Result<Vec<u8>, aes_gcm::Error> {
        match &self.cipher {
            Cipher::XChaCha(c) => c.encrypt(GenericArray::from_slice(nonce), payload),
            Cipher::Aes128(c) => c.encrypt(GenericArray::from_slice(nonce), payload),
            Cipher::Aes192(c) => c.encrypt(GenericArray::from_slice(nonce), payload),
        }
    }

    fn decrypt(&self, nonce: &[u8], payload: Payload<'_, '_>) -> Result<Vec<u8>, aes_gcm::Error> {
        match &self.cipher {
            Cipher::XChaCha(c) => c.decrypt(GenericArray::from_slice(nonce), payload),
            Cipher::Aes128(c) => c.decrypt(GenericArray::from_slice(nonce), payload),
            Cipher::Aes192(c) => c.decrypt(GenericArray::from_slice(nonce), payload),
        }
    }
}

/// The current key (seals and opens) and previous keys (open only).
#[derive(Debug)]
pub struct KeyRing {
    current: Key,
    previous: Vec<Key>,
}

impl KeyRing {
    pub fn new(current: Key, previous: Vec<Key>) -> Self {
        // A previous key equal to the current one adds nothing.
        let previous = previous
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Self { current, previous }
    }

    pub fn current_id(&self) -> KeyId {
        self.current.id
    }

    pub fn contains(&self, id: KeyId) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: KeyId) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// Encrypts under the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, CryptoError> {
        let key = &self.current;
        let mut nonce = vec![0u8; key.nonce_len()];
        OsRng.fill_bytes(&mut nonce);
        let sealed = key
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Fails only for inputs of tens of gigabytes (values are ≤ 64 KiB), but an
            // empty ciphertext must never be stored as if it were one.
            .map_err(|_| CryptoError::Encryption)?;
        let mut body = nonce;
        body.extend_from_slice(&sealed);
        Ok(format!(
            "{FORMAT_VERSION}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    /// Decrypts a value sealed by this ring (current or previous key) for `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (id, body) = split(sealed)?;
        let key = self.key(id).ok_or(CryptoError::UnknownKey(id))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if body.len() < key.nonce_len() + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(key.nonce_len());
        key.decrypt(
            nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Authentication)
    }
}

fn split(sealed: &str) -> Result<(KeyId, &str), CryptoError> {
    let mut parts = sealed.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(FORMAT_VERSION), Some(id), Some(body)) => {
            Ok((KeyId::parse(id).ok_or(CryptoError::Malformed)?, body))
        }
        _ => Err(CryptoError::Malformed),
    }
}

/// The key id a sealed value names, without opening it.
pub fn key_id_of(sealed: &str) -> Option<KeyId> {
    split(sealed).ok().map(|(id, _)| id)
}

/// Associated data binding a secret version to its row.
pub fn secret_aad(account: AccountId, name: &str, version: i64) -> String {
    format!("secret:v1:{account}:{}:{version}", name.to_lowercase())
}

/// Associated data binding a webhook secret to its trigger.
pub fn webhook_aad(trigger: crate::ids::TriggerId) -> String {
    format!("webhook:v1:{trigger}")
}

/// HMAC-SHA256 (RFC 2104) over `message`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // `new_from_slice` accepts keys of any length (longer ones are hashed first).
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of every length")
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Decodes key text (§3.9): `base64:<text>` (standard alphabet, padding optional),
/// `hex:<text>` (any case), or unprefixed exactly 64 hex characters, exactly 44
/// characters of padded base64 decoding to 32 bytes, or exactly 32 printable ASCII
/// characters taken as the bytes themselves. The decoded length must be one of `sizes`.
/// A 32-character hex string is therefore a raw key: write `hex:` for 16-byte hex keys.
pub fn parse_key_text(text: &str, sizes: &[usize]) -> Result<Vec<u8>, String> {
    let expected = match sizes {
        [only] => only.to_string(),
        [init @ .., last] => format!(
            "{} or {last}",
            init.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        [] => String::new(),
    };
    let check = |kind: &str, bytes: Vec<u8>| {
        if sizes.contains(&bytes.len()) {
            Ok(bytes)
        } else {
            Err(format!(
                "{kind} key decodes to {} bytes; expected {expected}",
                bytes.len()
            ))
        }
    };
    let lenient_base64 = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    if let Some(rest) = text.strip_prefix("base64:") {
        let bytes = lenient_base64
            .decode(rest.trim())
            .map_err(|e| format!("base64 key is not valid base64: {e}"))?;
        return check("base64", bytes);
    }
    if let Some(rest) = text.strip_prefix("hex:") {
        let bytes =
            hex::decode(rest.trim()).map_err(|e| format!("hex key is not valid hex: {e}"))?;
        return check("hex", bytes);
    }
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return check("hex", hex::decode(text).map_err(|e| e.to_string())?);
    }
    if text.len() == 44 {
        if let Ok(bytes) = STANDARD.decode(text) {
            if bytes.len() == 32 {
                return check("base64", bytes);
            }
        }
    }
    if text.len() == 32 && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return check("raw", text.as_bytes().to_vec());
    }
    Err(format!(
        "unrecognised key text of {} characters: use base64:<text>, hex:<text>, 64 hex characters, \
         44 characters of padded base64, or 32 printable ASCII characters",
        text.chars().count()
    ))
}

#[cfg(test)]
mod tests;
