//! Secrets: encrypted, versioned, write-only values per account. The API shows metadata
//! only; plaintext leaves the service solely through [`ResolveSecrets`], which feeds the
//! function runtime.

mod actor;
mod domain;
mod error;
mod memory;
mod postgres;
mod resolver;
mod service;

pub use actor::{
    CreateSecret, DeleteSecret, GetSecret, ListSecrets, ResolveSecrets, SecretsActor, UpdateSecret,
};
pub use domain::{SealedVersion, SecretMetadata, SecretName, SecretValue, VersionRef, VALUE_MAX};
pub use error::{ResolveError, SecretsError};
pub use memory::MemorySecretStore;
pub use postgres::PgSecretStore;
pub use resolver::SecretResolver;
pub use service::{RewrapReport, SecretsService};

use crate::error::StoreError;
use crate::ids::{AccountId, SecretId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use chrono::{DateTime, Utc};

crate::handle_trait!(
    /// What the HTTP edge may ask of the secrets subsystem.
    SecretsHandle: CreateSecret,
    GetSecret,
    ListSecrets,
    UpdateSecret,
    DeleteSecret,
);

/// Persistence of secrets and their versions. The memory and PostgreSQL implementations
/// behave identically (uniqueness, ordering, compare-and-set, cascades).
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Inserts a secret at version 1. `Conflict` if the account already has the name
    /// (case-insensitively); `NotFound` if the account does not exist.
    /// `LimitExceeded` when the account already holds `quota` secrets.
    async fn create(
        &self,
        meta: &SecretMetadata,
        first: &SealedVersion,
        quota: Quota,
    ) -> Result<(), StoreError>;

    async fn get(&self, account: AccountId, name_key: &str) -> Result<SecretMetadata, StoreError>;

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<SecretMetadata>, StoreError>;

    /// Adds `next` as the new current version if the secret is still at `expected`
    /// (compare-and-set); `VersionMismatch` otherwise. Old versions are kept.
    async fn add_version(
        &self,
        id: SecretId,
        expected: i64,
        next: &SealedVersion,
        now: DateTime<Utc>,
    ) -> Result<SecretMetadata, StoreError>;

    /// Deletes the secret and every version; with `expected`, only at that version.
    async fn delete(
        &self,
        account: AccountId,
        name_key: &str,
        expected: Option<i64>,
    ) -> Result<(), StoreError>;

    /// The current version of each named secret that exists (names case-folded).
    async fn current_versions(
        &self,
        account: AccountId,
        name_keys: &[String],
    ) -> Result<Vec<(SecretMetadata, SealedVersion)>, StoreError>;

    /// Up to `limit` versions not sealed with `key_id`, after the given position.
    async fn versions_not_under(
        &self,
        key_id: &str,
        after: Option<(SecretId, i64)>,
        limit: i64,
    ) -> Result<Vec<VersionRef>, StoreError>;

    /// Replaces one version's ciphertext if it is still `old` (compare-and-set); returns
    /// whether it was replaced.
    async fn replace_ciphertext(
        &self,
        id: SecretId,
        version: i64,
        old: &str,
        key_id: &str,
        new: &str,
    ) -> Result<bool, StoreError>;

    /// How many stored versions are sealed with `key_id`.
    async fn count_under(&self, key_id: &str) -> Result<u64, StoreError>;

    /// Every key id some stored version is sealed with.
    async fn key_ids(&self) -> Result<Vec<String>, StoreError>;
}
