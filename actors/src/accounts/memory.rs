//! In-memory [`AccountStore`]; behaves like the PostgreSQL one except for durability.

use super::{Account, AccountChanges, AccountStore};
use crate::error::StoreError;
use crate::ids::AccountId;
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::store::{MemoryDb, Row, Table};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `app_accounts`: by id and in list order `(created_at, id)`.
#[derive(Debug, Default)]
pub(super) struct AccountTable {
    by_id: HashMap<AccountId, Account>,
    order: BTreeMap<PageKey, AccountId>,
}

impl Table for AccountTable {
    /// Accounts hang off nothing.
    fn cascade(&mut self, _: Row, _: &mut Vec<Row>) {}

    fn contains(&self, row: Row) -> bool {
        matches!(row, Row::Account(id) if self.by_id.contains_key(&id))
    }
}

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
        let mut tables = self.db.lock().await;
        let table = tables.get::<AccountTable>();
        table.order.insert(account.page_key(), account.id);
        table.by_id.insert(account.id, account.clone());
        Ok(())
    }

    async fn get(&self, id: AccountId) -> Result<Account, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<AccountTable>()
            .by_id
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(
        &self,
        page: PageRequest,
        only: Option<AccountId>,
    ) -> Result<Page<Account>, StoreError> {
        use std::ops::Bound;
        let mut tables = self.db.lock().await;
        let table = tables.get::<AccountTable>();
        let lower = match page.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let rows: Vec<Account> = match only {
            // One account: at most one row, found by id.
            Some(id) => table
                .by_id
                .get(&id)
                .filter(|a| page.after.is_none_or(|after| a.page_key() > after))
                .cloned()
                .into_iter()
                .collect(),
            None => table
                .order
                .range((lower, Bound::Unbounded))
                .take(page.fetch_limit() as usize)
                .filter_map(|(_, id)| table.by_id.get(id).cloned())
                .collect(),
        };
        Ok(Page::from_overfetch(rows, &page))
    }

    async fn update(
        &self,
        id: AccountId,
        changes: &AccountChanges,
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        let mut tables = self.db.lock().await;
        let account = tables
            .get::<AccountTable>()
            .by_id
            .get_mut(&id)
            .ok_or(StoreError::NotFound)?;
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
        let mut tables = self.db.lock().await;
        if !tables.get::<AccountTable>().by_id.contains_key(&id) {
            return Err(StoreError::NotFound);
        }
        if let Some(why) = tables.restricts(Row::Account(id)) {
            return Err(StoreError::InvalidState(why));
        }
        let table = tables.get::<AccountTable>();
        let account = table.by_id.remove(&id).ok_or(StoreError::NotFound)?;
        table.order.remove(&account.page_key());
        tables.cascade(Row::Account(id));
        Ok(())
    }
}
