//! Account business logic as a plain struct, so it is testable without an actor system.
//! The actor in `actor.rs` is a thin adapter over it.

use super::{Account, AccountChanges, AccountStore, AccountsError, NewAccount};
use crate::clock::Clock;
use crate::error::OrNotFound;
use crate::ids::AccountId;
use crate::page::{Page, PageRequest};
use std::sync::Arc;

#[derive(Clone)]
pub struct AccountsService {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
}

impl AccountsService {
    pub fn new(store: Arc<dyn AccountStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    #[tracing::instrument(skip_all)]
    pub async fn create(&self, new: NewAccount) -> Result<Account, AccountsError> {
        let now = self.clock.now();
        let account = Account {
            id: AccountId::generate(),
            owner: new.owner.as_str().to_owned(),
            metadata: new.metadata.into_map(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert(&account).await?;
        tracing::info!(account_id = %account.id, "account created");
        Ok(account)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn get(&self, id: AccountId) -> Result<Account, AccountsError> {
        Ok(self.store.get(id).await.or_not_found("account")?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        page: PageRequest,
        only: Option<AccountId>,
    ) -> Result<Page<Account>, AccountsError> {
        Ok(self.store.list(page, only).await?)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn update(
        &self,
        id: AccountId,
        changes: AccountChanges,
    ) -> Result<Account, AccountsError> {
        Ok(self
            .store
            .update(id, &changes, self.clock.now())
            .await
            .or_not_found("account")?)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn delete(&self, id: AccountId) -> Result<(), AccountsError> {
        self.store.delete(id).await.or_not_found("account")?;
        tracing::info!(account_id = %id, "account deleted with everything under it");
        Ok(())
    }
}
