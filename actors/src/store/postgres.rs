//! The PostgreSQL connection pool. Start-up keeps trying to reach the database until
//! `DATABASE_CONNECT_TIMEOUT` has passed, then gives up with a clear error: a replica that
//! cannot reach its database must exit (and be restarted by its orchestrator), never hang.

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::{Duration, Instant};
use tokio_postgres::Row;

use crate::error::StoreError;
use crate::ids::AccountId;
use crate::page::{Page, PageRequest};

/// What the pool needs from the settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub max_connections: usize,
    pub connect_timeout: Duration,
}

/// Why a pool could not be made: a DSN that cannot be parsed is a configuration error
/// (exit 2), an unreachable server is a runtime failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidDsn(String),
    #[error("database unreachable after {waited_ms} ms: {cause:#}")]
    Unreachable {
        waited_ms: u128,
        cause: anyhow::Error,
    },
}

/// Parses the DSN (URL or key=value form), builds the pool, and waits for one working
/// connection.
pub async fn connect(dsn: &str, options: &PgOptions) -> Result<Pool, ConnectError> {
    let (mut pg_config, tls) = super::pg_tls::config(dsn).map_err(ConnectError::InvalidDsn)?;
    // One attempt never outlasts the whole start-up budget.
    let per_attempt = options
        .connect_timeout
        .min(Duration::from_secs(5))
        .max(Duration::from_millis(100));
    pg_config.connect_timeout(per_attempt);
    if pg_config.get_application_name().is_none() {
        pg_config.application_name("service-layer");
    }
    let recycling = || ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        super::pg_tls::Tls::Plain => {
            Manager::from_config(pg_config, tokio_postgres::NoTls, recycling())
        }
        super::pg_tls::Tls::Rustls(tls) => Manager::from_config(pg_config, tls, recycling()),
    };
    let pool = Pool::builder(manager)
        .max_size(options.max_connections.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(per_attempt))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| ConnectError::InvalidDsn(e.to_string()))?;

    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match ping(&pool).await {
            Ok(()) => return Ok(pool),
            Err(cause) => {
                let waited = started.elapsed();
                if waited + delay >= options.connect_timeout {
                    return Err(ConnectError::Unreachable {
                        waited_ms: waited.as_millis(),
                        cause,
                    });
                }
                tracing::warn!(error = %format!("{cause:#}"), retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One round trip: a connection from the pool and `SELECT 1`.
pub async fn ping(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.context("get a connection")?;
    client.simple_query("SELECT 1").await.context("SELECT 1")?;
    Ok(())
}

/// The row `id` of `table` if it is `account`'s (else `NotFound`). `columns` and `table`
/// are the caller's constants; the statement is prepared once per connection.
pub(crate) async fn account_row<T>(
    pool: &Pool,
    columns: &str,
    table: &str,
    account: AccountId,
    id: &uuid::Uuid,
    from_row: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {columns} FROM {table} WHERE id = $1 AND account_id = $2"
        ))
        .await?;
    match client.query_opt(&stmt, &[id, account.as_uuid()]).await? {
        Some(row) => from_row(&row),
        None => Err(StoreError::NotFound),
    }
}

/// The row `id` of `table` if it is `account`'s, locked until `db`'s transaction ends
/// (`FOR NO KEY UPDATE`: the caller changes it; foreign-key checks against it still
/// pass); `NotFound` otherwise. What a read-modify-write under the row lock (a PATCH)
/// starts with.
pub(crate) async fn locked_account_row(
    db: &impl deadpool_postgres::GenericClient,
    columns: &str,
    table: &str,
    account: AccountId,
    id: &uuid::Uuid,
) -> Result<Row, StoreError> {
    let sql = format!(
        "SELECT {columns} FROM {table} WHERE id = $1 AND account_id = $2 FOR NO KEY UPDATE"
    );
    db.query_opt(&sql, &[id, account.as_uuid()])
        .await?
        .ok_or(StoreError::NotFound)
}

/// Deletes the row `id` of `table` if it is `account`'s (its children go by `ON DELETE
/// CASCADE`); `NotFound` if there was none.
pub(crate) async fn delete_account_row(
    pool: &Pool,
    table: &str,
    account: AccountId,
    id: &uuid::Uuid,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let sql = format!("DELETE FROM {table} WHERE id = $1 AND account_id = $2");
    match client.execute(&sql, &[id, account.as_uuid()]).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// One page of an account's rows of `table` in list order `(created_at, id)`, keyset from
/// the page key (strictly after it). `columns` and `table` are the caller's constants; the
/// statement is prepared once per connection.
pub(crate) async fn account_page<T: crate::page::Keyed>(
    pool: &Pool,
    columns: &str,
    table: &str,
    account: AccountId,
    page: &PageRequest,
    from_row: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {columns} FROM {table}
             WHERE account_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
             ORDER BY created_at, id
             LIMIT $4"
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                account.as_uuid(),
                &page.after.map(|k| k.at),
                &page.after.map(|k| k.id),
                &page.fetch_limit(),
            ],
        )
        .await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, page))
}
