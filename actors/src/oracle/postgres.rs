//! PostgreSQL [`OracleStore`] over `app_oracle_sources` and `app_oracle_requests`
//! (migration V12). A request's change reads it `FOR UPDATE`, so the API and the
//! dispatchers take turns on it; claims skip rows another replica is claiming.

use super::{Change, Holder, Lease, OracleStore, Request, RequestStatus, Source, SourceChange};
use crate::error::StoreError;
use crate::ids::{AccountId, RequestId, SourceId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::Tx;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

const SOURCE: &str =
    "id, account_id, name, description, url, method, headers, body, enabled, created_at, updated_at";
const REQUEST: &str = "id, account_id, data_source_id, status, payload, result, error, attempts,
    next_attempt_at, lease_owner, lease_until, created_at, updated_at, completed_at";

fn source_from(row: &Row) -> Result<Source, StoreError> {
    Ok(Source {
        id: SourceId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        url: row.try_get("url")?,
        method: row.try_get("method")?,
        headers: row.try_get::<_, Json<_>>("headers")?.0,
        body: row.try_get("body")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn request_from(row: &Row) -> Result<Request, StoreError> {
    let status: &str = row.try_get("status")?;
    let lease = match (row.try_get("lease_owner")?, row.try_get("lease_until")?) {
        (Some(owner), Some(until)) => Some(Lease { owner, until }),
        _ => None,
    };
    Ok(Request {
        id: RequestId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        data_source_id: SourceId::from(row.try_get::<_, Uuid>("data_source_id")?),
        status: RequestStatus::parse(status).ok_or_else(|| {
            StoreError::internal(anyhow::anyhow!("unknown oracle request status {status:?}"))
        })?,
        payload: row.try_get("payload")?,
        result: row.try_get("result")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

fn name_conflict(e: &tokio_postgres::Error, name: &str) -> Option<StoreError> {
    (e.code() == Some(&SqlState::UNIQUE_VIOLATION))
        .then(|| StoreError::Conflict(format!("oracle data source {name:?} already exists")))
}

/// See [`super::insert_request`]: the source is checked first (an enabled one of the
/// account, locked against deletion until the transaction ends), then the open requests
/// are counted, as memory mode orders them. The quota lock is taken before the source's
/// row lock, as every quota-checked insert takes it first: the other order could
/// deadlock with an account deletion and another insert of the account.
pub(super) async fn insert_request(
    db: &impl GenericClient,
    r: &Request,
    open: Quota,
) -> Result<(), StoreError> {
    if open.max().is_some() {
        crate::quota::lock_pg(db, r.account_id.as_uuid()).await?;
    }
    let usable = db
        .query_opt(
            "SELECT 1 FROM app_oracle_sources WHERE id = $1 AND account_id = $2 AND enabled
             FOR KEY SHARE",
            &[r.data_source_id.as_uuid(), r.account_id.as_uuid()],
        )
        .await?;
    if usable.is_none() {
        let account = db
            .query_opt(
                "SELECT 1 FROM app_accounts WHERE id = $1",
                &[r.account_id.as_uuid()],
            )
            .await?;
        return Err(match account {
            None => StoreError::NotFound,
            Some(_) => StoreError::InvalidState(super::unusable_source().to_string()),
        });
    }
    crate::quota::check_pg(
        db,
        open,
        r.account_id.as_uuid(),
        "SELECT count(*) FROM (SELECT 1 FROM app_oracle_requests
             WHERE account_id = $1 AND status IN ('pending', 'running') LIMIT $2) held",
        "pending or running oracle requests",
    )
    .await?;
    let inserted = db
        .execute(
            "INSERT INTO app_oracle_requests (id, account_id, data_source_id, status, payload,
                 attempts, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                r.id.as_uuid(),
                r.account_id.as_uuid(),
                r.data_source_id.as_uuid(),
                &r.status.as_str(),
                &r.payload,
                &r.attempts,
                &r.next_attempt_at,
                &r.created_at,
                &r.updated_at,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        // The account went meanwhile (the source is locked).
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => Err(StoreError::NotFound),
        Err(e) => Err(e.into()),
    }
}

pub struct PgOracleStore {
    pool: Pool,
}

impl PgOracleStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl OracleStore for PgOracleStore {
    async fn create_source(&self, s: &Source, quota: Quota) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        crate::quota::check_pg(
            &tx,
            quota,
            s.account_id.as_uuid(),
            "SELECT count(*) FROM (SELECT 1 FROM app_oracle_sources WHERE account_id = $1 LIMIT $2) held",
            "oracle data sources",
        )
        .await?;
        let inserted = tx
            .execute(
                "INSERT INTO app_oracle_sources (id, account_id, name, description, url, method,
                     headers, body, enabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    s.id.as_uuid(),
                    s.account_id.as_uuid(),
                    &s.name,
                    &s.description,
                    &s.url,
                    &s.method,
                    &Json(&s.headers),
                    &s.body,
                    &s.enabled,
                    &s.created_at,
                    &s.updated_at,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                return Err(StoreError::NotFound)
            }
            Err(e) => return Err(name_conflict(&e, &s.name).unwrap_or_else(|| e.into())),
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_source(&self, account: AccountId, id: SourceId) -> Result<Source, StoreError> {
        let table = "app_oracle_sources";
        crate::store::postgres::account_row(
            &self.pool,
            SOURCE,
            table,
            account,
            id.as_uuid(),
            source_from,
        )
        .await
    }

    async fn list_sources(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Source>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            SOURCE,
            "app_oracle_sources",
            account,
            &page,
            source_from,
        )
        .await
    }

    async fn change_source(
        &self,
        account: AccountId,
        id: SourceId,
        change: SourceChange<'_>,
    ) -> Result<Source, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = crate::store::postgres::locked_account_row(
            &tx,
            SOURCE,
            "app_oracle_sources",
            account,
            id.as_uuid(),
        )
        .await?;
        let s = change(&source_from(&row)?);
        let updated = tx
            .execute(
                "UPDATE app_oracle_sources SET name = $3, description = $4, url = $5, method = $6,
                     headers = $7, body = $8, enabled = $9, updated_at = $10
                 WHERE id = $1 AND account_id = $2",
                &[
                    s.id.as_uuid(),
                    s.account_id.as_uuid(),
                    &s.name,
                    &s.description,
                    &s.url,
                    &s.method,
                    &Json(&s.headers),
                    &s.body,
                    &s.enabled,
                    &s.updated_at,
                ],
            )
            .await;
        match updated {
            Ok(_) => {
                tx.commit().await?;
                Ok(s)
            }
            Err(e) => Err(name_conflict(&e, &s.name).unwrap_or_else(|| e.into())),
        }
    }

    async fn delete_source(&self, account: AccountId, id: SourceId) -> Result<(), StoreError> {
        crate::store::postgres::delete_account_row(
            &self.pool,
            "app_oracle_sources",
            account,
            id.as_uuid(),
        )
        .await
    }

    async fn create_request(&self, request: &Request, open: Quota) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_request(&tx, request, open).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_request(&self, account: AccountId, id: RequestId) -> Result<Request, StoreError> {
        let table = "app_oracle_requests";
        crate::store::postgres::account_row(
            &self.pool,
            REQUEST,
            table,
            account,
            id.as_uuid(),
            request_from,
        )
        .await
    }

    async fn list_requests(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Request>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            REQUEST,
            "app_oracle_requests",
            account,
            &page,
            request_from,
        )
        .await
    }

    async fn change(
        &self,
        id: RequestId,
        holder: Holder<'_>,
        change: Change<'_>,
    ) -> Result<Request, StoreError> {
        let mut client = self.pool.get().await?;
        let mut tx = Tx::Postgres(client.transaction().await?);
        let Tx::Postgres(db) = &mut tx else {
            unreachable!("a PostgreSQL transaction")
        };
        let account = match holder {
            Holder::Account(account) => Some(*account.as_uuid()),
            Holder::Lease(_) => None,
        };
        let row = db
            .query_opt(
                &format!(
                    "SELECT {REQUEST} FROM app_oracle_requests
                     WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) FOR UPDATE"
                ),
                &[id.as_uuid(), &account],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let current = request_from(&row)?;
        super::check_holder(&current, holder)?;
        let next = change(&current)?;
        let (lease_owner, lease_until) = match &next.lease {
            Some(lease) => (Some(lease.owner.as_str()), Some(lease.until)),
            None => (None, None),
        };
        db.execute(
            "UPDATE app_oracle_requests SET status = $2, result = $3, error = $4, attempts = $5,
                 next_attempt_at = $6, lease_owner = $7, lease_until = $8, updated_at = $9,
                 completed_at = $10
             WHERE id = $1",
            &[
                id.as_uuid(),
                &next.status.as_str(),
                &next.result,
                &next.error,
                &next.attempts,
                &next.next_attempt_at,
                &lease_owner,
                &lease_until,
                &next.updated_at,
                &next.completed_at,
            ],
        )
        .await?;
        if let Some(event) = super::event_of(&current, &next) {
            crate::events::insert(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Request>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "WITH picked AS (
                     SELECT id FROM app_oracle_requests
                     WHERE status IN ('pending', 'running') AND next_attempt_at <= $1
                       AND (lease_until IS NULL OR lease_until <= $1)
                     ORDER BY next_attempt_at
                     LIMIT $4
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE app_oracle_requests r
                 SET status = 'running', lease_owner = $2, lease_until = $3, next_attempt_at = $3,
                     attempts = r.attempts + 1,
                     updated_at = CASE WHEN r.status = 'pending' THEN $1 ELSE r.updated_at END
                 FROM picked WHERE r.id = picked.id
                 RETURNING r.*",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&now, &owner, &lease_until, &limit])
            .await?;
        rows.iter().map(request_from).collect()
    }

    async fn renew(
        &self,
        id: RequestId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE app_oracle_requests SET lease_until = $3, next_attempt_at = $3
                 WHERE id = $1 AND lease_owner = $2 AND status IN ('pending', 'running')",
                &[id.as_uuid(), &owner, &lease_until],
            )
            .await?;
        Ok(n == 1)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT min(next_attempt_at) FROM app_oracle_requests
                 WHERE status IN ('pending', 'running')",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn purge(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM app_oracle_requests WHERE id IN (
                     SELECT id FROM app_oracle_requests
                     WHERE completed_at IS NOT NULL AND completed_at < $1
                     ORDER BY completed_at LIMIT $2)",
                &[&before, &limit],
            )
            .await?)
    }
}
