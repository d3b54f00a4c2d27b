//! PostgreSQL [`TokenStore`]: `app_api_tokens`, unique on `token_hash`, cascading from
//! the account.

use super::{ApiToken, TokenStore};
use crate::error::StoreError;
use crate::ids::{AccountId, TokenId};
use crate::page::{Page, PageRequest};
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

const COLUMNS: &str = "id, account_id, name, token_prefix, expires_at, created_at";

pub struct PgTokenStore {
    pool: Pool,
}

impl PgTokenStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn from_row(row: &Row) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: TokenId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        name: row.try_get("name")?,
        token_prefix: row.try_get("token_prefix")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait::async_trait]
impl TokenStore for PgTokenStore {
    async fn insert(&self, token: &ApiToken, hash: &[u8; 32]) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let result = client
            .execute(
                "INSERT INTO app_api_tokens (id, account_id, name, token_prefix, token_hash, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    token.id.as_uuid(),
                    token.account_id.as_uuid(),
                    &token.name,
                    &token.token_prefix,
                    &hash.as_slice(),
                    &token.expires_at,
                    &token.created_at,
                ],
            )
            .await;
        match result {
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::NotFound)
            }
            other => other.map(|_| ()).map_err(StoreError::from),
        }
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<ApiToken>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            COLUMNS,
            "app_api_tokens",
            account,
            &page,
            from_row,
        )
        .await
    }

    async fn get(&self, account: AccountId, id: TokenId) -> Result<ApiToken, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM app_api_tokens WHERE id = $1 AND account_id = $2"),
                &[id.as_uuid(), account.as_uuid()],
            )
            .await?;
        row.as_ref().map(from_row).ok_or(StoreError::NotFound)?
    }

    async fn delete(&self, account: AccountId, id: TokenId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM app_api_tokens WHERE id = $1 AND account_id = $2",
                &[id.as_uuid(), account.as_uuid()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM app_api_tokens WHERE token_hash = $1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&hash.as_slice()]).await?;
        row.as_ref().map(from_row).transpose()
    }
}
