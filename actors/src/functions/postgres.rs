//! PostgreSQL [`FunctionStore`]: `app_functions` and `app_function_executions` (maps,
//! lists and action records as JSONB), both cascading from the account; executions also
//! from their function.

use super::{
    Effect, Execution, ExecutionStatus, Fence, Function, FunctionLimits, FunctionStore, Refused,
};
use crate::error::StoreError;
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::{GroupCommit, Tx};
use deadpool_postgres::Pool;
use std::sync::Arc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

const FUNCTION: &str =
    "id, account_id, name, description, source, secrets, timeout_ms, memory_mib, \
                        output_limit_bytes, version, created_at, updated_at";
const EXECUTION: &str =
    "id, account_id, function_id, status, input, output, logs, error, error_code, \
                         started_at, completed_at, duration_ms, actions";

/// Execution records written per transaction when they queue up.
const RECORD_BATCH: usize = 128;

pub struct PgFunctionStore {
    pool: Pool,
    /// Execution records with no event and no effects (job attempts, trigger firings,
    /// plain HTTP executes) are group-committed: under load one transaction settles and
    /// records many runs instead of one each.
    records: GroupCommit<Pending, Result<(), StoreError>>,
    /// Function reads, grouped the same way: every execution starts with one.
    reads: GroupCommit<(AccountId, FunctionId), Result<Function, StoreError>>,
}

impl PgFunctionStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            records: GroupCommit::new(RECORD_BATCH),
            reads: GroupCommit::new(RECORD_BATCH),
        }
    }
}

/// Reads functions by `(account, id)`, one result per key, in one statement.
async fn read_functions(
    pool: Pool,
    keys: Vec<(AccountId, FunctionId)>,
) -> Vec<Result<Function, StoreError>> {
    match select_functions(&pool, &keys).await {
        Ok(found) => keys.iter().map(|key| pick(&found, key)).collect(),
        // No key can fail the read of the others: the error is the database's.
        Err(e) => keys.iter().map(|_| Err(e.for_each())).collect(),
    }
}

type Found = std::collections::HashMap<Uuid, Result<Function, StoreError>>;

async fn select_functions(
    pool: &Pool,
    keys: &[(AccountId, FunctionId)],
) -> Result<Found, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {FUNCTION} FROM app_functions WHERE id = ANY($1)"
        ))
        .await?;
    let ids: Vec<Uuid> = keys.iter().map(|(_, id)| *id.as_uuid()).collect();
    let rows = client.query(&stmt, &[&ids]).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, function_from(row))))
        .collect()
}

/// The function of `key` (a clone: two keys may name the same function); `NotFound`
/// if it does not exist or belongs to another account.
fn pick(found: &Found, (account, id): &(AccountId, FunctionId)) -> Result<Function, StoreError> {
    match found.get(id.as_uuid()) {
        Some(Ok(f)) if f.account_id == *account => Ok(f.clone()),
        Some(Err(e)) => Err(StoreError::internal(anyhow::anyhow!(
            "stored function {id}: {e:#}"
        ))),
        _ => Err(StoreError::NotFound),
    }
}

/// An execution record waiting for its group commit, with the lease it settles.
struct Pending {
    execution: Execution,
    fence: Option<Arc<dyn Fence>>,
}

/// Writes a batch of records, one result per record: in one transaction (each fence
/// settled, then every record whose fence held inserted by one statement). If that
/// transaction fails for one record's doing, none fails for another's: records of a
/// function deleted mid-run are left out and the rest written together again; for any
/// other such error (or if that fails too), each record is written alone.
async fn record_batch(pool: Pool, batch: Vec<Pending>) -> Vec<Result<(), StoreError>> {
    if batch.len() > 1 {
        match record_together(&pool, &batch).await {
            Ok(results) => return results,
            // Functions deleted mid-run: their records are `NotFound`, the rest are
            // written together again (one extra statement, not one transaction each).
            Err(StoreError::NotFound) => {
                if let Some(results) = without_missing_functions(&pool, &batch).await {
                    return results;
                }
            }
            // One record's doing (a function deleted mid-run, a lock conflict): each of
            // them alone, so the others still commit.
            Err(e) if one_records_doing(&e) => {
                tracing::debug!(error = ?e, records = batch.len(), "batched execution records failed; recording one by one");
            }
            // The database's (unreachable, pool exhausted): one at a time would only wait
            // as long again per record, holding up every other.
            Err(e) => return batch.iter().map(|_| Err(e.for_each())).collect(),
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    for pending in &batch {
        results.push(record_alone(&pool, pending).await);
    }
    results
}

/// The batch written together once more without the records whose function is gone
/// (each of those `NotFound`); `None` if that fails too.
async fn without_missing_functions(
    pool: &Pool,
    batch: &[Pending],
) -> Option<Vec<Result<(), StoreError>>> {
    let ids: Vec<Uuid> = batch
        .iter()
        .map(|p| *p.execution.function_id.as_uuid())
        .collect();
    let client = pool.get().await.ok()?;
    let existing: std::collections::HashSet<Uuid> = client
        .query("SELECT id FROM app_functions WHERE id = ANY($1)", &[&ids])
        .await
        .ok()?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    let (kept, gone): (Vec<&Pending>, Vec<&Pending>) = batch
        .iter()
        .partition(|p| existing.contains(p.execution.function_id.as_uuid()));
    if gone.is_empty() {
        return None;
    }
    let mut written = if kept.is_empty() {
        Vec::new()
    } else {
        record_together(pool, &kept).await.ok()?
    }
    .into_iter();
    Some(
        batch
            .iter()
            .map(|p| {
                if existing.contains(p.execution.function_id.as_uuid()) {
                    written.next().unwrap_or(Err(StoreError::NotFound))
                } else {
                    Err(StoreError::NotFound)
                }
            })
            .collect(),
    )
}

/// Whether a batch's error may come from one of its records rather than from the
/// database: a missing function (`NotFound`), invalid data (SQLSTATE class 22), a broken
/// constraint (23) or a lock conflict (40: deadlock, serialization).
fn one_records_doing(e: &StoreError) -> bool {
    match e {
        StoreError::NotFound => true,
        StoreError::Internal(e) => e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .is_some_and(|code| {
                ["22", "23", "40"]
                    .iter()
                    .any(|c| code.code().starts_with(c))
            }),
        _ => false,
    }
}

async fn record_together(
    pool: &Pool,
    batch: &[impl std::borrow::Borrow<Pending>],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut client = pool.get().await?;
    let mut tx = Tx::Postgres(client.transaction().await?);
    let mut results = Vec::with_capacity(batch.len());
    let mut held = Vec::with_capacity(batch.len());
    for pending in batch.iter().map(std::borrow::Borrow::borrow) {
        let holds = match &pending.fence {
            Some(fence) => fence.settle(&mut tx, &pending.execution).await?,
            None => true,
        };
        if holds {
            held.push(&pending.execution);
            results.push(Ok(()));
        } else {
            results.push(Err(super::actions::lease_lost()));
        }
    }
    let Tx::Postgres(pg) = &tx else {
        unreachable!("a PostgreSQL store's transaction")
    };
    insert_executions(pg, &held).await?;
    tx.commit().await?;
    Ok(results)
}

async fn record_alone(pool: &Pool, pending: &Pending) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let Some(fence) = pending.fence.as_deref() else {
        return insert_execution(&client, &pending.execution).await;
    };
    let mut tx = Tx::Postgres(client.transaction().await?);
    super::record(&mut tx, &pending.execution, None, Some(fence), &[]).await?;
    tx.commit().await
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

fn function_from(row: &Row) -> Result<Function, StoreError> {
    let Json(secrets): Json<Vec<String>> = row.try_get("secrets")?;
    Ok(Function {
        id: FunctionId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        source: row.try_get("source")?,
        secrets,
        limits: FunctionLimits {
            timeout_ms: to_u64(row.try_get("timeout_ms")?),
            memory_mib: to_u64(row.try_get("memory_mib")?),
            output_limit_bytes: to_u64(row.try_get("output_limit_bytes")?),
        },
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn execution_from(row: &Row) -> Result<Execution, StoreError> {
    let status = match row.try_get::<_, &str>("status")? {
        "succeeded" => ExecutionStatus::Succeeded,
        _ => ExecutionStatus::Failed,
    };
    let Json(logs): Json<Vec<String>> = row.try_get("logs")?;
    let Json(actions) = row.try_get("actions")?;
    Ok(Execution {
        id: ExecutionId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        function_id: FunctionId::from(row.try_get::<_, Uuid>("function_id")?),
        status,
        input: row.try_get("input")?,
        output: row.try_get("output")?,
        logs,
        error: row.try_get("error")?,
        error_code: row.try_get("error_code")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        duration_ms: row.try_get("duration_ms")?,
        actions,
    })
}

fn fk_is_not_found(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        StoreError::NotFound
    } else {
        e.into()
    }
}

#[async_trait::async_trait]
impl FunctionStore for PgFunctionStore {
    async fn create(&self, f: &Function, quota: Quota) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        crate::quota::check_pg(
            &tx,
            quota,
            f.account_id.as_uuid(),
            "SELECT count(*) FROM (SELECT 1 FROM app_functions WHERE account_id = $1 LIMIT $2) held",
            "functions",
        )
        .await?;
        tx
            .execute(
                &format!("INSERT INTO app_functions ({FUNCTION}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"),
                &[
                    f.id.as_uuid(),
                    f.account_id.as_uuid(),
                    &f.name,
                    &f.description,
                    &f.source,
                    &Json(&f.secrets),
                    &to_i64(f.limits.timeout_ms),
                    &to_i64(f.limits.memory_mib),
                    &to_i64(f.limits.output_limit_bytes),
                    &f.version,
                    &f.created_at,
                    &f.updated_at,
                ],
            )
            .await
            .map_err(fk_is_not_found)?;
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, account: AccountId, id: FunctionId) -> Result<Function, StoreError> {
        let pool = self.pool.clone();
        let read = move |keys| read_functions(pool.clone(), keys);
        match self.reads.submit((account, id), read).await {
            Some(result) => result,
            None => Err(StoreError::internal(anyhow::anyhow!(
                "the function read's batch failed to complete"
            ))),
        }
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Function>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            FUNCTION,
            "app_functions",
            account,
            &page,
            function_from,
        )
        .await
    }

    async fn replace(&self, f: &Function) -> Result<Function, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE app_functions SET name = $3, description = $4, source = $5, secrets = $6,
                         timeout_ms = $7, memory_mib = $8, output_limit_bytes = $9, version = $10, updated_at = $11
                     WHERE id = $1 AND account_id = $2
                     RETURNING {FUNCTION}"
                ),
                &[
                    f.id.as_uuid(),
                    f.account_id.as_uuid(),
                    &f.name,
                    &f.description,
                    &f.source,
                    &Json(&f.secrets),
                    &to_i64(f.limits.timeout_ms),
                    &to_i64(f.limits.memory_mib),
                    &to_i64(f.limits.output_limit_bytes),
                    &f.version,
                    &f.updated_at,
                ],
            )
            .await?;
        row.as_ref()
            .map(function_from)
            .ok_or(StoreError::NotFound)?
    }

    async fn delete(&self, account: AccountId, id: FunctionId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM app_functions WHERE id = $1 AND account_id = $2",
                &[id.as_uuid(), account.as_uuid()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn insert_execution(
        &self,
        e: &Execution,
        event: Option<&crate::events::Event>,
        fence: Option<&Arc<dyn Fence>>,
        effects: &[Box<dyn Effect>],
    ) -> Result<Option<Refused>, StoreError> {
        if event.is_none() && effects.is_empty() {
            let pending = Pending {
                execution: e.clone(),
                fence: fence.cloned(),
            };
            let pool = self.pool.clone();
            let write = move |batch| record_batch(pool.clone(), batch);
            return match self.records.submit(pending, write).await {
                Some(result) => result.map(|()| None),
                None => Err(StoreError::internal(anyhow::anyhow!(
                    "the execution record's batch failed to complete"
                ))),
            };
        }
        let mut client = self.pool.get().await?;
        // The record, its event and its actions' effects: one transaction, rolled back
        // (by dropping it) when an effect is refused.
        let mut tx = Tx::Postgres(client.transaction().await?);
        let refused = super::record(&mut tx, e, event, fence.map(|f| &**f), effects).await?;
        if refused.is_none() {
            tx.commit().await?;
        }
        Ok(refused)
    }

    async fn purge_executions(
        &self,
        started_before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM app_function_executions WHERE id IN (
                     SELECT id FROM app_function_executions WHERE started_at < $1
                     ORDER BY started_at LIMIT $2)",
                &[&started_before, &limit],
            )
            .await?)
    }

    async fn list_executions(
        &self,
        account: AccountId,
        function: FunctionId,
        page: PageRequest,
    ) -> Result<Page<Execution>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {EXECUTION} FROM app_function_executions
                 WHERE function_id = $1 AND account_id = $2
                   AND ($3::timestamptz IS NULL OR (started_at, id) < ($3, $4::uuid))
                 ORDER BY started_at DESC, id DESC LIMIT $5"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    function.as_uuid(),
                    account.as_uuid(),
                    &page.after.map(|k| k.at),
                    &page.after.map(|k| k.id),
                    &page.fetch_limit(),
                ],
            )
            .await?;
        let items = rows
            .iter()
            .map(execution_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, &page))
    }

    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        function: Option<FunctionId>,
    ) -> Result<Execution, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {EXECUTION} FROM app_function_executions
                     WHERE id = $1 AND account_id = $2 AND ($3::uuid IS NULL OR function_id = $3)"
                ),
                &[
                    id.as_uuid(),
                    account.as_uuid(),
                    &function.map(|f| *f.as_uuid()),
                ],
            )
            .await?;
        row.as_ref()
            .map(execution_from)
            .ok_or(StoreError::NotFound)?
    }
}

/// Inserts several execution records in one statement (arrays unnested).
async fn insert_executions(
    db: &impl deadpool_postgres::GenericClient,
    batch: &[&Execution],
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO app_function_executions ({EXECUTION}, created_at)
             SELECT {EXECUTION}, started_at
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[],
                         $6::jsonb[], $7::jsonb[], $8::text[], $9::text[],
                         $10::timestamptz[], $11::timestamptz[], $12::bigint[], $13::jsonb[])
                  AS e({EXECUTION})"
        ))
        .await?;
    let column = |f: fn(&Execution) -> Uuid| batch.iter().map(|e| f(e)).collect::<Vec<_>>();
    db.execute(
        &stmt,
        &[
            &column(|e| *e.id.as_uuid()),
            &column(|e| *e.account_id.as_uuid()),
            &column(|e| *e.function_id.as_uuid()),
            &batch.iter().map(|e| e.status.as_str()).collect::<Vec<_>>(),
            &batch.iter().map(|e| &e.input).collect::<Vec<_>>(),
            &batch.iter().map(|e| &e.output).collect::<Vec<_>>(),
            &batch.iter().map(|e| Json(&e.logs)).collect::<Vec<_>>(),
            &batch.iter().map(|e| e.error.as_deref()).collect::<Vec<_>>(),
            &batch
                .iter()
                .map(|e| e.error_code.as_deref())
                .collect::<Vec<_>>(),
            &batch.iter().map(|e| e.started_at).collect::<Vec<_>>(),
            &batch.iter().map(|e| e.completed_at).collect::<Vec<_>>(),
            &batch.iter().map(|e| e.duration_ms).collect::<Vec<_>>(),
            &batch.iter().map(|e| Json(&e.actions)).collect::<Vec<_>>(),
        ],
    )
    .await
    .map_err(fk_is_not_found)?;
    Ok(())
}

/// Inserts an execution record: `NotFound` if its function was deleted during the run.
pub(super) async fn insert_execution(
    db: &impl deadpool_postgres::GenericClient,
    e: &Execution,
) -> Result<(), StoreError> {
    insert_executions(db, &[e]).await
}
