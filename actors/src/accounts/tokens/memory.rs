//! In-memory [`TokenStore`]: tokens by id and by hash, removed with their account.

use super::{ApiToken, TokenStore};
use crate::error::StoreError;
use crate::ids::{AccountId, TokenId};
use crate::page::{Page, PageRequest};
use crate::store::memory::AccountRows;
use crate::store::{MemoryDb, Row, Table};
use std::collections::HashMap;
use std::sync::Arc;

/// `app_api_tokens`, with the hash index that authentication uses.
#[derive(Debug, Default)]
struct TokenTable {
    rows: AccountRows<TokenId, ApiToken>,
    hashes: HashMap<TokenId, [u8; 32]>,
    by_hash: HashMap<[u8; 32], TokenId>,
}

impl TokenTable {
    fn remove(&mut self, id: &TokenId) -> Option<ApiToken> {
        if let Some(hash) = self.hashes.remove(id) {
            self.by_hash.remove(&hash);
        }
        self.rows.remove(id)
    }
}

impl Table for TokenTable {
    fn cascade(&mut self, parent: Row, _: &mut Vec<Row>) {
        if let Row::Account(account) = parent {
            for id in self.rows.ids_of(account).collect::<Vec<_>>() {
                self.remove(&id);
            }
        }
    }
}

pub struct MemoryTokenStore {
    db: Arc<MemoryDb>,
}

impl MemoryTokenStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl TokenStore for MemoryTokenStore {
    async fn insert(&self, token: &ApiToken, hash: &[u8; 32]) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if !tables.exists(Row::Account(token.account_id)) {
            return Err(StoreError::NotFound);
        }
        let table = tables.get::<TokenTable>();
        table.rows.insert(token.account_id, token.id, token.clone());
        table.hashes.insert(token.id, *hash);
        table.by_hash.insert(*hash, token.id);
        Ok(())
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<ApiToken>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<TokenTable>().rows.page(account, &page))
    }

    async fn get(&self, account: AccountId, id: TokenId) -> Result<ApiToken, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<TokenTable>()
            .rows
            .get_in(account, &id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn delete(&self, account: AccountId, id: TokenId) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<TokenTable>();
        if table.rows.get_in(account, &id).is_none() {
            return Err(StoreError::NotFound);
        }
        table.remove(&id);
        Ok(())
    }

    async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<TokenTable>();
        Ok(table
            .by_hash
            .get(hash)
            .and_then(|id| table.rows.get(id))
            .cloned())
    }
}
