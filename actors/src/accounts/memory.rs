//! In-memory [`AccountStore`]; behaves like the PostgreSQL one except for durability.

use super::{Account, AccountChanges, AccountStore};
use crate::error::StoreError;
use crate::ids::AccountId;
use crate::page::{Page, PageRequest};
use crate::store::MemoryDb;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub struct MemoryAccountStore {
    db: Arc<MemoryDb>,
}

impl MemoryAccountStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl AccountStore for MemoryAccountStore {
    async fn insert(&self, account: &Account) -> Result<(), StoreError> {
        self.db.lock().accounts.insert(account.clone());
        Ok(())
    }

    async fn get(&self, id: AccountId) -> Result<Account, StoreError> {
        self.db
            .lock()
            .accounts
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(
        &self,
        page: PageRequest,
        only: Option<AccountId>,
    ) -> Result<Page<Account>, StoreError> {
        let tables = self.db.lock();
        let after = page.after.map(|k| (k.at, AccountId::from(k.id)));
        let rows: Vec<Account> = tables
            .accounts
            .iter_after(after)
            .filter(|a| only.is_none_or(|id| a.id == id))
            .take(page.fetch_limit() as usize)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, &page))
    }

    async fn update(
        &self,
        id: AccountId,
        changes: &AccountChanges,
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        let mut tables = self.db.lock();
        let account = tables.accounts.get_mut(&id).ok_or(StoreError::NotFound)?;
        if let Some(owner) = &changes.owner {
            account.owner = owner.as_str().to_owned();
        }
        if let Some(metadata) = &changes.metadata {
            account.metadata = metadata.as_map().clone();
        }
        account.updated_at = now;
        Ok(account.clone())
    }

    async fn delete(&self, id: AccountId) -> Result<(), StoreError> {
        self.db
            .lock()
            .delete_account(&id)
            .map(|_| ())
            .ok_or(StoreError::NotFound)
    }
}
