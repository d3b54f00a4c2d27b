//! PostgreSQL [`AccountStore`]. Children reference `app_accounts ON DELETE CASCADE`, so a
//! single DELETE removes everything under an account.

use super::{Account, AccountChanges, AccountStore};
use crate::error::StoreError;
use crate::ids::AccountId;
use crate::page::{Page, PageRequest};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::collections::BTreeMap;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

const COLUMNS: &str = "id, owner, metadata, created_at, updated_at";

pub struct PgAccountStore {
    pool: Pool,
}

impl PgAccountStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn from_row(row: &Row) -> Result<Account, StoreError> {
    let id: Uuid = row.try_get("id")?;
    let Json(metadata): Json<BTreeMap<String, String>> = row.try_get("metadata")?;
    Ok(Account {
        id: id.into(),
        owner: row.try_get("owner")?,
        metadata,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl AccountStore for PgAccountStore {
    async fn insert(&self, account: &Account) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO app_accounts (id, owner, metadata, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    account.id.as_uuid(),
                    &account.owner,
                    &Json(&account.metadata),
                    &account.created_at,
                    &account.updated_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn get(&self, id: AccountId) -> Result<Account, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {COLUMNS} FROM app_accounts WHERE id = $1"))
            .await?;
        let row = client.query_opt(&stmt, &[id.as_uuid()]).await?;
        row.as_ref().map(from_row).ok_or(StoreError::NotFound)?
    }

    async fn list(
        &self,
        page: PageRequest,
        only: Option<AccountId>,
    ) -> Result<Page<Account>, StoreError> {
        let client = self.pool.get().await?;
        // NULL parameters switch the cursor and the scope filter off, so one prepared
        // statement serves every list.
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM app_accounts
                 WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid))
                   AND ($3::uuid IS NULL OR id = $3)
                 ORDER BY created_at, id
                 LIMIT $4"
            ))
            .await?;
        let after_at = page.after.map(|k| k.at);
        let after_id = page.after.map(|k| k.id);
        let only = only.map(|id| *id.as_uuid());
        let rows = client
            .query(&stmt, &[&after_at, &after_id, &only, &page.fetch_limit()])
            .await?;
        let accounts = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(accounts, &page))
    }

    async fn update(
        &self,
        id: AccountId,
        changes: &AccountChanges,
        now: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE app_accounts
                 SET owner = COALESCE($2, owner), metadata = COALESCE($3, metadata), updated_at = $4
                 WHERE id = $1
                 RETURNING {COLUMNS}"
            ))
            .await?;
        let owner = changes.owner.as_ref().map(|o| o.as_str());
        let metadata = changes.metadata.as_ref().map(|m| Json(m.as_map()));
        let row = client
            .query_opt(&stmt, &[id.as_uuid(), &owner, &metadata, &now])
            .await?;
        row.as_ref().map(from_row).ok_or(StoreError::NotFound)?
    }

    async fn delete(&self, id: AccountId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("DELETE FROM app_accounts WHERE id = $1")
            .await?;
        match client.execute(&stmt, &[id.as_uuid()]).await {
            Ok(0) => Err(StoreError::NotFound),
            Ok(_) => Ok(()),
            // A table's trigger refused the cascade (a pending withdrawal, V13).
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::RESTRICT_VIOLATION) => {
                Err(StoreError::InvalidState(
                    e.as_db_error()
                        .map_or("the account cannot be deleted now", |db| db.message())
                        .to_owned(),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
}
