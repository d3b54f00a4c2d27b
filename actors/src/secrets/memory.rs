//! In-memory [`SecretStore`], inside the shared [`MemoryDb`] so account deletion cascades.

use super::{SealedVersion, SecretMetadata, SecretStore, VersionRef};
use crate::error::StoreError;
use crate::ids::{AccountId, SecretId};
use crate::page::{Page, PageRequest};
use crate::store::memory::{SecretRow, Tables};
use crate::store::MemoryDb;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub struct MemorySecretStore {
    db: Arc<MemoryDb>,
}

impl MemorySecretStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

fn find<'a>(
    tables: &'a Tables,
    account: AccountId,
    name_key: &str,
) -> Result<&'a SecretRow, StoreError> {
    tables
        .secrets
        .by_name(account, name_key)
        .ok_or(StoreError::NotFound)
}

#[async_trait::async_trait]
impl SecretStore for MemorySecretStore {
    async fn create(&self, meta: &SecretMetadata, first: &SealedVersion) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        if tables.accounts.get(&meta.account_id).is_none() {
            return Err(StoreError::NotFound);
        }
        if tables
            .secrets
            .by_name(meta.account_id, &meta.name.to_ascii_lowercase())
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "secret \"{}\" already exists",
                meta.name
            )));
        }
        tables.secrets.insert(SecretRow {
            meta: meta.clone(),
            versions: vec![first.clone()],
        });
        Ok(())
    }

    async fn get(&self, account: AccountId, name_key: &str) -> Result<SecretMetadata, StoreError> {
        Ok(find(&self.db.lock(), account, name_key)?.meta.clone())
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<SecretMetadata>, StoreError> {
        let tables = self.db.lock();
        let after = page.after.map(|k| (k.at, SecretId::from(k.id)));
        let rows: Vec<SecretMetadata> = tables
            .secrets
            .iter_account(account, after)
            .take(page.fetch_limit() as usize)
            .map(|row| row.meta.clone())
            .collect();
        Ok(Page::from_overfetch(rows, &page))
    }

    async fn add_version(
        &self,
        id: SecretId,
        expected: i64,
        next: &SealedVersion,
        now: DateTime<Utc>,
    ) -> Result<SecretMetadata, StoreError> {
        let mut tables = self.db.lock();
        let row = tables.secrets.get_mut(&id).ok_or(StoreError::NotFound)?;
        if row.meta.version != expected {
            return Err(StoreError::VersionMismatch(format!(
                "secret is at version {}, not {expected}",
                row.meta.version
            )));
        }
        row.meta.version = next.version;
        row.meta.updated_at = now;
        row.versions.push(next.clone());
        Ok(row.meta.clone())
    }

    async fn delete(
        &self,
        account: AccountId,
        name_key: &str,
        expected: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        let row = find(&tables, account, name_key)?;
        if let Some(expected) = expected {
            if row.meta.version != expected {
                return Err(StoreError::VersionMismatch(format!(
                    "secret is at version {}, not {expected}",
                    row.meta.version
                )));
            }
        }
        let id = row.meta.id;
        tables.secrets.remove(&id);
        Ok(())
    }

    async fn current_versions(
        &self,
        account: AccountId,
        name_keys: &[String],
    ) -> Result<Vec<(SecretMetadata, SealedVersion)>, StoreError> {
        let tables = self.db.lock();
        Ok(name_keys
            .iter()
            .filter_map(|key| tables.secrets.by_name(account, key))
            .filter_map(|row| {
                row.versions
                    .iter()
                    .find(|v| v.version == row.meta.version)
                    .map(|v| (row.meta.clone(), v.clone()))
            })
            .collect())
    }

    async fn versions_not_under(
        &self,
        key_id: &str,
        after: Option<(SecretId, i64)>,
        limit: i64,
    ) -> Result<Vec<VersionRef>, StoreError> {
        let tables = self.db.lock();
        let mut refs: Vec<VersionRef> = tables
            .secrets
            .all()
            .flat_map(|row| {
                row.versions
                    .iter()
                    .filter(|v| v.key_id != key_id)
                    .map(|v| VersionRef {
                        secret_id: row.meta.id,
                        account_id: row.meta.account_id,
                        name: row.meta.name.clone(),
                        version: v.version,
                        ciphertext: v.ciphertext.clone(),
                    })
            })
            .filter(|r| after.is_none_or(|a| (r.secret_id, r.version) > a))
            .collect();
        refs.sort_by_key(|r| (r.secret_id, r.version));
        refs.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(refs)
    }

    async fn replace_ciphertext(
        &self,
        id: SecretId,
        version: i64,
        old: &str,
        key_id: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let mut tables = self.db.lock();
        let Some(v) = tables
            .secrets
            .get_mut(&id)
            .and_then(|row| row.versions.iter_mut().find(|v| v.version == version))
        else {
            return Ok(false);
        };
        if v.ciphertext != old {
            return Ok(false);
        }
        v.key_id = key_id.to_owned();
        v.ciphertext = new.to_owned();
        Ok(true)
    }

    async fn count_under(&self, key_id: &str) -> Result<u64, StoreError> {
        let tables = self.db.lock();
        Ok(tables
            .secrets
            .all()
            .flat_map(|row| &row.versions)
            .filter(|v| v.key_id == key_id)
            .count() as u64)
    }

    async fn key_ids(&self) -> Result<Vec<String>, StoreError> {
        let tables = self.db.lock();
        let mut ids: Vec<String> = tables
            .secrets
            .all()
            .flat_map(|row| row.versions.iter().map(|v| v.key_id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}
