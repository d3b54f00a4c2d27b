//! Accounts: the tenants everything else hangs off, and the API tokens that act for them
//! (`tokens`). Deleting an account removes everything under it (a cascade in both stores).

mod actor;
mod domain;
mod error;
mod memory;
mod postgres;
mod service;
pub mod tokens;

pub use actor::{
    AccountsActor, CreateAccount, DeleteAccount, GetAccount, ListAccounts, UpdateAccount,
};
pub use domain::{Account, AccountChanges, Metadata, NewAccount, Owner};
pub use error::AccountsError;
pub use memory::MemoryAccountStore;
pub use postgres::PgAccountStore;
pub use service::AccountsService;

use crate::error::StoreError;
use crate::ids::AccountId;
use crate::page::{Page, PageRequest};
use chrono::{DateTime, Utc};
use tokens::{DeleteToken, GetToken, IssueToken, ListTokens, VerifyToken};

crate::handle_trait!(
    /// What the HTTP edge may ask of the accounts subsystem (accounts and their tokens).
    AccountsHandle: CreateAccount,
    GetAccount,
    ListAccounts,
    UpdateAccount,
    DeleteAccount,
    IssueToken,
    ListTokens,
    GetToken,
    DeleteToken,
    VerifyToken,
);

/// Persistence of accounts. Implemented by [`MemoryAccountStore`] and [`PgAccountStore`],
/// which behave identically (ordering, cascades, errors) except for durability.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn insert(&self, account: &Account) -> Result<(), StoreError>;
    async fn get(&self, id: AccountId) -> Result<Account, StoreError>;
    /// Accounts ordered by `(created_at, id)`; `only` restricts the list to one account
    /// (what an account-scoped token may see).
    async fn list(
        &self,
        page: PageRequest,
        only: Option<AccountId>,
    ) -> Result<Page<Account>, StoreError>;
    /// Applies `changes` atomically (no lost update between concurrent PATCHes of
    /// different fields) and returns the new state.
    async fn update(
        &self,
        id: AccountId,
        changes: &AccountChanges,
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError>;
    /// Removes the account and everything under it.
    async fn delete(&self, id: AccountId) -> Result<(), StoreError>;
}
