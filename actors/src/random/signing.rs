//! Signed random (CONTRACT.md §3.10): the message layout, the value derived from the
//! signature, and verification. Ed25519 signatures are deterministic (RFC 8032), so the
//! value is unpredictable without the key and fixed once the message is: anyone holding
//! the public key checks that the service issued it, unaltered, for that message. (The
//! key holder chooses the counter and time, so this is not a VRF; see docs/api.md.)

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha512};

/// Longest value, in bytes.
pub const MAX_LENGTH: usize = 1024;
const DOMAIN: &[u8] = b"service-layer/random/v1";

/// One signed random value, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomResult {
    /// The account id as its 36 ASCII characters (verification takes it as given).
    pub account_id: String,
    pub request_id: String,
    pub counter: u64,
    pub value: Vec<u8>,
    pub signature: [u8; 64],
    pub public_key: [u8; 32],
    pub created_at: DateTime<Utc>,
}

/// `M` = `service-layer/random/v1` ‖ 0 ‖ account id ‖ 0 ‖ request id ‖ 0 ‖ counter (u64
/// BE) ‖ `created_at` in Unix microseconds (i64 BE) ‖ length (u32 BE).
pub fn message(
    account_id: &str,
    request_id: &str,
    counter: u64,
    created_at: DateTime<Utc>,
    length: u32,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + account_id.len() + request_id.len() + 23);
    m.extend_from_slice(DOMAIN);
    m.push(0);
    m.extend_from_slice(account_id.as_bytes());
    m.push(0);
    m.extend_from_slice(request_id.as_bytes());
    m.push(0);
    m.extend_from_slice(&counter.to_be_bytes());
    m.extend_from_slice(&created_at.timestamp_micros().to_be_bytes());
    m.extend_from_slice(&length.to_be_bytes());
    m
}

/// The first `length` bytes of HMAC-SHA512(signature, M ‖ 1) ‖ HMAC-SHA512(signature,
/// M ‖ 2) ‖ … (at most 16 blocks for [`MAX_LENGTH`]).
pub fn expand(signature: &[u8; 64], m: &[u8], length: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(length + 64);
    let mut block: u8 = 1;
    while value.len() < length {
        let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(signature)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(m);
        mac.update(&[block]);
        value.extend_from_slice(&mac.finalize().into_bytes());
        block = block.wrapping_add(1);
    }
    value.truncate(length);
    value
}

/// `key_id` = the first 8 bytes of SHA-256(public key), hex.
pub fn key_id(public_key: &[u8; 32]) -> String {
    hex::encode(&sha2::Sha256::digest(public_key)[..8])
}

/// The service's signing key.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn key_id(&self) -> String {
        key_id(&self.public_key())
    }

    /// Signs and derives the value; `length` is 1..=[`MAX_LENGTH`] (checked by the
    /// caller).
    pub fn sign(
        &self,
        account_id: &str,
        request_id: &str,
        counter: u64,
        created_at: DateTime<Utc>,
        length: u32,
    ) -> RandomResult {
        let m = message(account_id, request_id, counter, created_at, length);
        let signature = self.key.sign(&m).to_bytes();
        RandomResult {
            account_id: account_id.to_owned(),
            request_id: request_id.to_owned(),
            counter,
            value: expand(&signature, &m, length as usize),
            signature,
            public_key: self.public_key(),
            created_at,
        }
    }
}

/// Why a result does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    UnknownKey,
    LengthMismatch,
    BadSignature,
    ValueMismatch,
}

impl Invalid {
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown key",
            Self::LengthMismatch => "length mismatch",
            Self::BadSignature => "bad signature",
            Self::ValueMismatch => "value mismatch",
        }
    }
}

/// Verifies `result` against `service_key`: its `public_key` must be that key, `length`
/// (when given) the value's, the signature valid over `M` rebuilt with the value's
/// length (strict RFC 8032 checks), and the value the one derived from it (compared in
/// constant time).
pub fn verify(
    result: &RandomResult,
    length: Option<u64>,
    service_key: &[u8; 32],
) -> Result<(), Invalid> {
    use subtle::ConstantTimeEq;
    if result.public_key != *service_key {
        return Err(Invalid::UnknownKey);
    }
    let actual = result.value.len();
    if length.is_some_and(|l| l != actual as u64) {
        return Err(Invalid::LengthMismatch);
    }
    let Ok(key) = VerifyingKey::from_bytes(service_key) else {
        return Err(Invalid::UnknownKey);
    };
    // Ids the service never signs cannot carry its signature: refused before hashing
    // a message that a public caller could make as large as the body limit.
    if result.account_id.len() != 36 || !(1..=128).contains(&result.request_id.len()) {
        return Err(Invalid::BadSignature);
    }
    let m = message(
        &result.account_id,
        &result.request_id,
        result.counter,
        result.created_at,
        u32::try_from(actual).map_err(|_| Invalid::LengthMismatch)?,
    );
    key.verify_strict(&m, &Signature::from_bytes(&result.signature))
        .map_err(|_| Invalid::BadSignature)?;
    let expected = expand(&result.signature, &m, actual);
    if bool::from(expected.ct_eq(&result.value)) {
        Ok(())
    } else {
        Err(Invalid::ValueMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<const N: usize>(text: &str) -> [u8; N] {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    /// RFC 8032 §7.1, tests 1–3: the signer is standard Ed25519.
    #[test]
    fn rfc_8032_vectors() {
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (seed, public, message, signature) in vectors {
            let key = SigningKey::from_bytes(&bytes::<32>(seed));
            assert_eq!(key.verifying_key().to_bytes(), bytes::<32>(public));
            let m = hex::decode(message).unwrap();
            assert_eq!(key.sign(&m).to_bytes(), bytes::<64>(signature));
            let public = VerifyingKey::from_bytes(&bytes::<32>(public)).unwrap();
            assert!(public
                .verify_strict(&m, &Signature::from_bytes(&bytes::<64>(signature)))
                .is_ok());
        }
    }

    #[test]
    fn a_result_verifies_and_any_change_breaks_it() {
        let signer = Signer::from_seed(&[7; 32]);
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let account = "8a3c7a4e-1f7e-4b4a-9d3e-0b5f2f2f2f2f";
        let r = signer.sign(account, "req-1", 42, at, 100);
        let key = signer.public_key();
        assert_eq!(r.value.len(), 100);
        assert_eq!(verify(&r, Some(100), &key), Ok(()));
        assert_eq!(verify(&r, None, &key), Ok(()));
        assert_eq!(verify(&r, Some(99), &key), Err(Invalid::LengthMismatch));
        assert_eq!(verify(&r, None, &[1; 32]), Err(Invalid::UnknownKey));
        for i in 0..r.value.len() {
            let mut v = r.clone();
            v.value[i] ^= 1;
            assert_eq!(
                verify(&v, None, &key),
                Err(Invalid::ValueMismatch),
                "value byte {i}"
            );
        }
        for i in 0..64 {
            let mut v = r.clone();
            v.signature[i] ^= 1;
            assert_eq!(
                verify(&v, None, &key),
                Err(Invalid::BadSignature),
                "signature byte {i}"
            );
        }
        let changed = [
            RandomResult {
                counter: 43,
                ..r.clone()
            },
            RandomResult {
                request_id: "req-2".into(),
                ..r.clone()
            },
            RandomResult {
                account_id: account.replace('8', "9"),
                ..r.clone()
            },
            RandomResult {
                created_at: at + chrono::TimeDelta::microseconds(1),
                ..r.clone()
            },
        ];
        for v in changed {
            assert_eq!(verify(&v, None, &key), Err(Invalid::BadSignature));
        }
        // Ids the service never issues (a 1 MB request id) are refused unhashed.
        let huge = RandomResult {
            request_id: "x".repeat(1 << 20),
            ..r.clone()
        };
        assert_eq!(verify(&huge, None, &key), Err(Invalid::BadSignature));
        // A truncated value is signed for another length.
        let mut short = r.clone();
        short.value.truncate(99);
        assert_eq!(verify(&short, None, &key), Err(Invalid::BadSignature));
        // The value spans several HMAC blocks, each one different.
        let long = signer.sign(account, "req-1", 43, at, 1024);
        assert_eq!(long.value.len(), 1024);
        assert_ne!(long.value[..64], long.value[64..128]);
        assert_eq!(key_id(&key).len(), 16);
    }
}
