//! In-memory [`TokenStore`], inside the shared [`MemoryDb`] so account deletion cascades.

use super::{ApiToken, TokenStore};
use crate::error::StoreError;
use crate::ids::{AccountId, TokenId};
use crate::page::{Page, PageRequest};
use crate::store::MemoryDb;
use std::sync::Arc;

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
        let mut tables = self.db.lock();
        if tables.accounts.get(&token.account_id).is_none() {
            return Err(StoreError::NotFound);
        }
        tables.tokens.insert(token.clone(), *hash);
        Ok(())
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<ApiToken>, StoreError> {
        let tables = self.db.lock();
        Ok(Page::in_list_order(
            tables.tokens.of_account(account),
            &page,
        ))
    }

    async fn get(&self, account: AccountId, id: TokenId) -> Result<ApiToken, StoreError> {
        self.db
            .lock()
            .tokens
            .get(&id)
            .filter(|t| t.account_id == account)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn delete(&self, account: AccountId, id: TokenId) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        match tables.tokens.get(&id) {
            Some(t) if t.account_id == account => {
                tables.tokens.remove(&id);
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        Ok(self.db.lock().tokens.by_hash(hash).cloned())
    }
}
