//! In-memory [`SecretStore`]: secrets with every version, by id, by `(account,
//! lower(name))` and in list order per account; removed with their account.

use super::{SealedVersion, SecretMetadata, SecretStore, VersionRef};
use crate::error::StoreError;
use crate::ids::{AccountId, SecretId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::quota::Quota;
use crate::store::memory::AccountRows;
use crate::store::{MemoryDb, Row, Table};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// A secret with every version, oldest first.
#[derive(Debug, Clone)]
struct SecretRow {
    meta: SecretMetadata,
    versions: Vec<SealedVersion>,
}

impl Keyed for SecretRow {
    fn page_key(&self) -> PageKey {
        self.meta.page_key()
    }
}

/// `app_secrets` and `app_secret_versions`.
#[derive(Debug, Default)]
struct SecretTable {
    rows: AccountRows<SecretId, SecretRow>,
    by_name: HashMap<(AccountId, String), SecretId>,
}

impl SecretTable {
    fn by_name(&self, account: AccountId, name_key: &str) -> Option<&SecretRow> {
        let id = self.by_name.get(&(account, name_key.to_owned()))?;
        self.rows.get(id)
    }

    fn remove(&mut self, id: &SecretId) {
        if let Some(row) = self.rows.remove(id) {
            self.by_name
                .remove(&(row.meta.account_id, row.meta.name.to_ascii_lowercase()));
        }
    }
}

impl Table for SecretTable {
    fn cascade(&mut self, parent: Row, _: &mut Vec<Row>) {
        if let Row::Account(account) = parent {
            for id in self.rows.ids_of(account).collect::<Vec<_>>() {
                self.remove(&id);
            }
        }
    }
}

pub struct MemorySecretStore {
    db: Arc<MemoryDb>,
}

impl MemorySecretStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

fn find<'a>(
    table: &'a SecretTable,
    account: AccountId,
    name_key: &str,
) -> Result<&'a SecretRow, StoreError> {
    table.by_name(account, name_key).ok_or(StoreError::NotFound)
}

#[async_trait::async_trait]
impl SecretStore for MemorySecretStore {
    async fn create(
        &self,
        meta: &SecretMetadata,
        first: &SealedVersion,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if !tables.exists(Row::Account(meta.account_id)) {
            return Err(StoreError::NotFound);
        }
        let table = tables.get::<SecretTable>();
        let key = (meta.account_id, meta.name.to_ascii_lowercase());
        if table.by_name.contains_key(&key) {
            return Err(StoreError::Conflict(format!(
                "secret \"{}\" already exists",
                meta.name
            )));
        }
        table.rows.check_quota(meta.account_id, quota, "secrets")?;
        table.by_name.insert(key, meta.id);
        table.rows.insert(
            meta.account_id,
            meta.id,
            SecretRow {
                meta: meta.clone(),
                versions: vec![first.clone()],
            },
        );
        Ok(())
    }

    async fn get(&self, account: AccountId, name_key: &str) -> Result<SecretMetadata, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(find(tables.get::<SecretTable>(), account, name_key)?
            .meta
            .clone())
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<SecretMetadata>, StoreError> {
        let mut tables = self.db.lock().await;
        let rows = tables.get::<SecretTable>().rows.page(account, &page);
        Ok(Page {
            items: rows.items.into_iter().map(|row| row.meta).collect(),
            next: rows.next,
        })
    }

    async fn add_version(
        &self,
        id: SecretId,
        expected: i64,
        next: &SealedVersion,
        now: DateTime<Utc>,
    ) -> Result<SecretMetadata, StoreError> {
        let mut tables = self.db.lock().await;
        let row = tables
            .get::<SecretTable>()
            .rows
            .get_mut(&id)
            .ok_or(StoreError::NotFound)?;
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
        let mut tables = self.db.lock().await;
        let table = tables.get::<SecretTable>();
        let row = find(table, account, name_key)?;
        if let Some(expected) = expected {
            if row.meta.version != expected {
                return Err(StoreError::VersionMismatch(format!(
                    "secret is at version {}, not {expected}",
                    row.meta.version
                )));
            }
        }
        let id = row.meta.id;
        table.remove(&id);
        Ok(())
    }

    async fn current_versions(
        &self,
        account: AccountId,
        name_keys: &[String],
    ) -> Result<Vec<(SecretMetadata, SealedVersion)>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<SecretTable>();
        Ok(name_keys
            .iter()
            .filter_map(|key| table.by_name(account, key))
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
        let mut tables = self.db.lock().await;
        let mut refs: Vec<VersionRef> = tables
            .get::<SecretTable>()
            .rows
            .values()
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
        let mut tables = self.db.lock().await;
        let Some(v) = tables
            .get::<SecretTable>()
            .rows
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
        let mut tables = self.db.lock().await;
        Ok(tables
            .get::<SecretTable>()
            .rows
            .values()
            .flat_map(|row| &row.versions)
            .filter(|v| v.key_id == key_id)
            .count() as u64)
    }

    async fn key_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut tables = self.db.lock().await;
        let mut ids: Vec<String> = tables
            .get::<SecretTable>()
            .rows
            .values()
            .flat_map(|row| row.versions.iter().map(|v| v.key_id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}
