//! Account domain types. Request data becomes these types (parse, don't validate) before
//! any actor or store sees it.

use crate::error::ValidationError;
use crate::ids::AccountId;
use crate::validate;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

const OWNER_MAX: usize = 256;
const METADATA_MAX_ENTRIES: usize = 64;
const METADATA_KEY_MAX: usize = 128;
const METADATA_VALUE_MAX: usize = 1024;

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub owner: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Account {
    /// A new account of `owner` without metadata, created at `now`.
    pub fn new(owner: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            id: AccountId::generate(),
            owner: owner.into(),
            metadata: BTreeMap::new(),
            created_at: now,
            updated_at: now,
        }
    }
}

impl crate::page::Keyed for Account {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

/// The account owner: trimmed, 1-256 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        validate::trimmed("owner", text, 1, OWNER_MAX).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-form account metadata: at most 64 entries, keys 1-128, values up to 1024 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse(map: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        validate::string_map(
            "metadata",
            map,
            METADATA_MAX_ENTRIES,
            METADATA_KEY_MAX,
            METADATA_VALUE_MAX,
        )
        .map(Self)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// A validated creation request.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub owner: Owner,
    pub metadata: Metadata,
}

/// A validated PATCH: `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct AccountChanges {
    pub owner: Option<Owner>,
    pub metadata: Option<Metadata>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_trimmed_and_bounded() {
        assert_eq!(
            Owner::parse("  alice ").map(|o| o.0),
            Ok("alice".to_owned())
        );
        assert_eq!(
            Owner::parse("   ").map_err(|e| e.to_string()),
            Err("owner: is required".to_owned())
        );
        assert!(Owner::parse(&"x".repeat(256)).is_ok());
        assert_eq!(
            Owner::parse(&"x".repeat(257)).map_err(|e| e.to_string()),
            Err("owner: must be 1-256 characters".to_owned())
        );
    }

    #[test]
    fn metadata_limits() {
        let many: BTreeMap<_, _> = (0..65).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(Metadata::parse(many).is_err());
        let empty_key = BTreeMap::from([(String::new(), "v".to_owned())]);
        assert!(Metadata::parse(empty_key).is_err());
        let long_value = BTreeMap::from([("k".to_owned(), "v".repeat(1025))]);
        assert_eq!(
            Metadata::parse(long_value).map_err(|e| e.to_string()),
            Err("metadata.k: must be at most 1024 characters".to_owned())
        );
        assert!(Metadata::parse(BTreeMap::from([("k".to_owned(), "v".repeat(1024))])).is_ok());
    }
}
