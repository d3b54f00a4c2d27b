//! Account-scoped API tokens: `slt_` + 43 base64url characters (32 random bytes), shown
//! once at creation and stored only as their SHA-256. A token acts on its own account
//! only; deleting it (or its account) revokes it at once on every replica, because every
//! request looks the hash up in the shared store.

mod actor;
mod memory;
mod postgres;
mod service;

pub use actor::{DeleteToken, GetToken, IssueToken, ListTokens, VerifyToken};
pub use memory::MemoryTokenStore;
pub use postgres::PgTokenStore;
pub use service::{IssuedToken, TokenName, TokensService, TOKEN_PREFIX};

use crate::error::StoreError;
use crate::ids::{AccountId, TokenId};
use crate::page::{Page, PageRequest};
use chrono::{DateTime, Utc};

/// A stored token, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub account_id: AccountId,
    pub name: String,
    /// The first 12 characters of the token, to recognise it in lists.
    pub token_prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl crate::page::Keyed for ApiToken {
    fn page_key(&self) -> crate::page::PageKey {
        crate::page::PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// `NotFound` if the account does not exist.
    async fn insert(&self, token: &ApiToken, hash: &[u8; 32]) -> Result<(), StoreError>;
    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<ApiToken>, StoreError>;
    async fn get(&self, account: AccountId, id: TokenId) -> Result<ApiToken, StoreError>;
    async fn delete(&self, account: AccountId, id: TokenId) -> Result<(), StoreError>;
    async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError>;
}
