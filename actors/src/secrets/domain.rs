//! Secret domain types. Values are write-only: nothing here ever leaves the service
//! except through the resolver that feeds functions.

use crate::error::ValidationError;
use crate::ids::{AccountId, SecretId};
use chrono::{DateTime, Utc};
use std::fmt;

const NAME_MAX: usize = 128;
/// Largest accepted value, in bytes.
pub const VALUE_MAX: usize = 64 * 1024;

/// A secret name: 1-128 of `[A-Za-z0-9_.-]`. Unique per account case-insensitively; the
/// creation spelling is kept for display.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        Self::check(text).map_err(|m| ValidationError::new("name", m))
    }

    /// Path segments that are not valid names simply do not exist.
    pub fn from_path(text: &str) -> Option<Self> {
        Self::check(text).ok()
    }

    fn check(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("is required".to_owned());
        }
        if text.len() > NAME_MAX {
            return Err(format!("must be at most {NAME_MAX} characters"));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(format!(
                "character {bad:?} not allowed (use A-Z, a-z, 0-9, _ . -)"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used for uniqueness and lookups.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({})", self.0)
    }
}

/// A secret value: 1 byte to 64 KiB, kept exactly as given (not trimmed). `Debug` never
/// shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn parse(text: String) -> Result<Self, ValidationError> {
        if text.is_empty() {
            return Err(ValidationError::new("value", "must not be empty"));
        }
        if text.len() > VALUE_MAX {
            return Err(ValidationError::new(
                "value",
                format!("must be at most {VALUE_MAX} bytes"),
            ));
        }
        Ok(Self(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

/// What the API shows of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMetadata {
    pub id: SecretId,
    pub account_id: AccountId,
    pub name: String,
    /// The current (latest) version; 1 at creation, +1 per update.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl crate::page::Keyed for SecretMetadata {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

/// One stored version: its ciphertext in the `crypto` wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedVersion {
    pub version: i64,
    pub key_id: String,
    pub ciphertext: String,
    pub created_at: DateTime<Utc>,
}

/// A stored version addressed for re-encryption.
#[derive(Debug, Clone)]
pub struct VersionRef {
    pub secret_id: SecretId,
    pub account_id: AccountId,
    pub name: String,
    pub version: i64,
    pub ciphertext: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(SecretName::parse("API_key-1.v2").is_ok());
        assert_eq!(SecretName::parse("Api_Key").unwrap().key(), "api_key");
        assert_eq!(
            SecretName::parse("").unwrap_err().to_string(),
            "name: is required"
        );
        assert_eq!(
            SecretName::parse("a b").unwrap_err().to_string(),
            "name: character ' ' not allowed (use A-Z, a-z, 0-9, _ . -)"
        );
        assert!(SecretName::parse(&"a".repeat(128)).is_ok());
        assert!(SecretName::parse(&"a".repeat(129)).is_err());
        assert!(SecretName::from_path("x/y").is_none());
    }

    #[test]
    fn values_are_bounded_and_never_printed() {
        assert!(SecretValue::parse(String::new()).is_err());
        assert!(SecretValue::parse("x".repeat(VALUE_MAX)).is_ok());
        assert!(SecretValue::parse("x".repeat(VALUE_MAX + 1)).is_err());
        let v = SecretValue::parse("  hunter2 ".to_owned()).unwrap();
        assert_eq!(v.expose(), "  hunter2 ", "not trimmed");
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
