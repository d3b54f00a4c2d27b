//! PostgreSQL trigger and firing stores: `app_triggers` and `app_trigger_firings`. Claims
//! use `FOR UPDATE SKIP LOCKED`, so replicas never take the same row; results that must
//! happen once rely on the firings' unique keys.
//!
//! One read crosses into another subsystem's table: a trigger's insert and update check
//! `app_functions` in the same statement, as a foreign key on (function, account) would,
//! so a function deleted concurrently cannot leave a trigger pointing at it.

use super::domain::{backlogged_event_firing, cron_firing, event_firing};
use super::{
    AdvancedCron, ClaimedFiring, Firing, FiringStatus, FiringStore, TickPlan, Trigger,
    TriggerChange, TriggerRule, TriggerStore, TriggerType,
};
use crate::error::StoreError;
use crate::error::ValidationError;
use crate::events::Event;
use crate::ids::{AccountId, EventId, ExecutionId, FiringId, FunctionId, TriggerId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::Tx;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

/// Open firings of a trigger (`$1`), counted through their partial index up to `$2`.
const OPEN_FIRINGS: &str = "SELECT count(*) FROM (SELECT 1 FROM app_trigger_firings
     WHERE trigger_id = $1 AND status IN ('pending', 'running') LIMIT $2) held";

const TRIGGER: &str = "id, account_id, function_id, type, rule, config, enabled, next_run, \
                       last_fired_at, created_at, updated_at";

pub struct PgTriggerStore {
    pool: Pool,
}

impl PgTriggerStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn trigger_from(row: &Row) -> Result<Trigger, StoreError> {
    let (kind, rule): (&str, &str) = (row.try_get("type")?, row.try_get("rule")?);
    Ok(Trigger {
        id: TriggerId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        function_id: FunctionId::from(row.try_get::<_, Uuid>("function_id")?),
        rule: TriggerRule::from_stored(kind, rule)
            .map_err(|e| StoreError::internal(anyhow::anyhow!("stored trigger rule: {e}")))?,
        config: row.try_get::<_, Json<_>>("config")?.0,
        enabled: row.try_get("enabled")?,
        next_run: row.try_get("next_run")?,
        last_fired_at: row.try_get("last_fired_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn firing_from(row: &Row) -> Result<Firing, StoreError> {
    Ok(Firing {
        id: FiringId::from(row.try_get::<_, Uuid>("id")?),
        trigger_id: TriggerId::from(row.try_get::<_, Uuid>("trigger_id")?),
        tick_at: row.try_get("tick_at")?,
        event_id: row
            .try_get::<_, Option<Uuid>>("event_id")?
            .map(EventId::from),
        params: row.try_get("params")?,
        status: FiringStatus::parse(row.try_get("status")?),
        execution_id: row
            .try_get::<_, Option<Uuid>>("execution_id")?
            .map(ExecutionId::from),
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
    })
}

fn fk_is_not_found(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound,
        _ => e.into(),
    }
}

const INSERT_FIRING: &str = "INSERT INTO app_trigger_firings
     (id, trigger_id, tick_at, event_id, params, status, execution_id, error, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
     ON CONFLICT DO NOTHING";

async fn insert_firing(
    client: &impl deadpool_postgres::GenericClient,
    f: &Firing,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            INSERT_FIRING,
            &[
                f.id.as_uuid(),
                f.trigger_id.as_uuid(),
                &f.tick_at,
                &f.event_id.map(|e| *e.as_uuid()),
                &f.params,
                &f.status.as_str(),
                &f.execution_id.map(|e| *e.as_uuid()),
                &f.error,
                &f.created_at,
            ],
        )
        .await
}

/// Inserts a trigger, in the caller's transaction when it has one (Devpack actions):
/// `NotFound` unless the function exists in the trigger's account.
pub(super) async fn insert_trigger(
    db: &impl deadpool_postgres::GenericClient,
    t: &Trigger,
    secret: Option<&str>,
    quota: Quota,
) -> Result<(), StoreError> {
    crate::quota::check_pg(
        db,
        quota,
        t.account_id.as_uuid(),
        "SELECT count(*) FROM (SELECT 1 FROM app_triggers WHERE account_id = $1 LIMIT $2) held",
        "triggers",
    )
    .await?;
    let n = db
        .execute(
            &format!(
                "INSERT INTO app_triggers ({TRIGGER}, webhook_secret)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
                 WHERE EXISTS (SELECT 1 FROM app_functions WHERE id = $3 AND account_id = $2)"
            ),
            &[
                t.id.as_uuid(),
                t.account_id.as_uuid(),
                t.function_id.as_uuid(),
                &t.kind().as_str(),
                &t.rule.text(),
                &Json(&t.config),
                &t.enabled,
                &t.next_run,
                &t.last_fired_at,
                &t.created_at,
                &t.updated_at,
                &secret,
            ],
        )
        .await
        .map_err(fk_is_not_found)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    crate::events::notify_work(db).await
}

/// Whether `owner` still holds firing `id`'s lease at `now`; the row stays locked until
/// the caller's transaction ends.
pub(super) async fn holds_firing(
    db: &impl deadpool_postgres::GenericClient,
    id: FiringId,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM app_trigger_firings
             WHERE id = $1 AND lease_owner = $2 AND lease_until > $3 FOR UPDATE",
            &[id.as_uuid(), &owner, &now],
        )
        .await?
        .is_some())
}

/// Records a firing's outcome and clears its lease, if `owner` holds it (with an unexpired
/// lease at `fence`, when fencing); whether it did.
async fn end_firing(
    db: &impl deadpool_postgres::GenericClient,
    id: FiringId,
    owner: &str,
    now: DateTime<Utc>,
    (status, execution_id, error): (FiringStatus, Option<ExecutionId>, Option<&str>),
    fence: Option<DateTime<Utc>>,
) -> Result<bool, StoreError> {
    let stmt = db
        .prepare_cached(
            "UPDATE app_trigger_firings
             SET status = $3, execution_id = $4, error = $5, updated_at = $6,
                 lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2
               AND ($7::timestamptz IS NULL OR lease_until > $7)",
        )
        .await?;
    let n = db
        .execute(
            &stmt,
            &[
                id.as_uuid(),
                &owner,
                &status.as_str(),
                &execution_id.map(|e| *e.as_uuid()),
                &error,
                &now,
                &fence,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Settles firing `id` with its run's outcome, in the execution's transaction, if `owner`
/// still holds its lease at `now`.
pub(super) async fn settle_firing(
    db: &impl deadpool_postgres::GenericClient,
    id: FiringId,
    owner: &str,
    now: DateTime<Utc>,
    outcome: (FiringStatus, Option<ExecutionId>, Option<&str>),
) -> Result<bool, StoreError> {
    end_firing(db, id, owner, now, outcome, Some(now)).await
}

#[async_trait::async_trait]
impl TriggerStore for PgTriggerStore {
    async fn create(
        &self,
        t: &Trigger,
        secret: Option<&str>,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        // A transaction: the quota's lock is held until the insert commits.
        let tx = client.transaction().await?;
        insert_trigger(&tx, t, secret, quota).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, account: AccountId, id: TriggerId) -> Result<Trigger, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TRIGGER} FROM app_triggers WHERE id = $1 AND account_id = $2"),
                &[id.as_uuid(), account.as_uuid()],
            )
            .await?;
        row.as_ref().map(trigger_from).ok_or(StoreError::NotFound)?
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Trigger>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            TRIGGER,
            "app_triggers",
            account,
            &page,
            trigger_from,
        )
        .await
    }

    async fn update(
        &self,
        account: AccountId,
        id: TriggerId,
        change: TriggerChange<'_>,
        secret: Option<&str>,
    ) -> Result<Result<Trigger, ValidationError>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = crate::store::postgres::locked_account_row(
            &tx,
            TRIGGER,
            "app_triggers",
            account,
            id.as_uuid(),
        )
        .await?;
        let t = &match change(&trigger_from(&current)?) {
            Ok(changed) => changed,
            Err(refused) => return Ok(Err(refused)),
        };
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE app_triggers SET function_id = $3, rule = $4, config = $5, enabled = $6,
                         next_run = $7, updated_at = $8, webhook_secret = COALESCE($9, webhook_secret)
                     WHERE id = $1 AND account_id = $2
                       AND EXISTS (SELECT 1 FROM app_functions WHERE id = $3 AND account_id = $2)
                     RETURNING {TRIGGER}"
                ),
                &[
                    t.id.as_uuid(),
                    t.account_id.as_uuid(),
                    t.function_id.as_uuid(),
                    &t.rule.text(),
                    &Json(&t.config),
                    &t.enabled,
                    &t.next_run,
                    &t.updated_at,
                    &secret,
                ],
            )
            .await
            .map_err(fk_is_not_found)?;
        let trigger = row
            .as_ref()
            .map(trigger_from)
            .ok_or(StoreError::NotFound)??;
        crate::events::notify_work(&tx).await?;
        tx.commit().await?;
        Ok(Ok(trigger))
    }

    async fn delete(&self, account: AccountId, id: TriggerId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM app_triggers WHERE id = $1 AND account_id = $2",
                &[id.as_uuid(), account.as_uuid()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn with_secret(&self, id: TriggerId) -> Result<(Trigger, Option<String>), StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TRIGGER}, webhook_secret FROM app_triggers WHERE id = $1"),
                &[id.as_uuid()],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok((trigger_from(&row)?, row.try_get("webhook_secret")?))
    }

    async fn insert_firing(&self, firing: &Firing, quota: Quota) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Counts open firings through their partial index, at most `quota` rows. No lock:
        // concurrent webhooks to one trigger must not queue for a pool connection, and
        // the bound may be passed by at most the number of them in flight at once.
        if let Some(max) = quota.max() {
            let open =
                crate::quota::count_pg(&tx, max, firing.trigger_id.as_uuid(), OPEN_FIRINGS).await?;
            quota.check(open, "pending firings", "trigger")?;
        }
        insert_firing(&tx, firing).await.map_err(fk_is_not_found)?;
        crate::events::notify_work(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sealed_secrets(
        &self,
        after: Option<TriggerId>,
        limit: i64,
    ) -> Result<Vec<(TriggerId, String)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, webhook_secret FROM app_triggers
                 WHERE webhook_secret IS NOT NULL AND ($1::uuid IS NULL OR id > $1)
                 ORDER BY id LIMIT $2",
                &[&after.map(|a| *a.as_uuid()), &limit],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((TriggerId::from(r.try_get::<_, Uuid>(0)?), r.try_get(1)?)))
            .collect()
    }

    async fn replace_secret(
        &self,
        id: TriggerId,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE app_triggers SET webhook_secret = $3 WHERE id = $1 AND webhook_secret = $2",
                &[id.as_uuid(), &old, &new],
            )
            .await?;
        Ok(n == 1)
    }
}

#[async_trait::async_trait]
impl FiringStore for PgTriggerStore {
    async fn advance_cron(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: &TickPlan,
    ) -> Result<AdvancedCron, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Rows locked here are skipped by other replicas until this commits.
        let due = tx
            .query(
                &format!(
                    "SELECT {TRIGGER} FROM app_triggers
                     WHERE type = 'cron' AND enabled AND next_run <= $1
                     ORDER BY next_run LIMIT $2
                     FOR UPDATE SKIP LOCKED"
                ),
                &[&now, &limit],
            )
            .await?;
        let mut advanced = AdvancedCron::default();
        let mut triggers = Vec::with_capacity(due.len());
        for row in &due {
            match trigger_from(row) {
                Ok(trigger) => triggers.push(trigger),
                // As for jobs: an unreadable row is parked, not allowed to stop the rest.
                Err(e) => {
                    let id: Uuid = row.try_get("id")?;
                    tracing::error!(trigger_id = %id, error = ?e, "unreadable trigger parked (next_run cleared)");
                    tx.execute(
                        "UPDATE app_triggers SET next_run = NULL WHERE id = $1",
                        &[&id],
                    )
                    .await?;
                }
            }
        }
        if triggers.is_empty() {
            tx.commit().await?;
            return Ok(advanced);
        }
        // Set-based, as for jobs: which triggers have an open firing, the firings
        // inserted from arrays, every `next_run` moved from arrays.
        let ids: Vec<Uuid> = triggers.iter().map(|t| *t.id.as_uuid()).collect();
        let busy_stmt = tx
            .prepare_cached(
                "SELECT DISTINCT trigger_id FROM app_trigger_firings
                 WHERE trigger_id = ANY($1) AND status IN ('pending', 'running')",
            )
            .await?;
        let busy: std::collections::HashSet<Uuid> = tx
            .query(&busy_stmt, &[&ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut firings = Vec::with_capacity(triggers.len());
        let mut next_runs = Vec::with_capacity(triggers.len());
        for trigger in &triggers {
            let dispatch = plan(trigger, busy.contains(trigger.id.as_uuid()));
            if let Some(tick) = trigger.next_run {
                firings.push(cron_firing(trigger.id, tick, dispatch.skip, now));
            }
            next_runs.push(dispatch.next_run);
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO app_trigger_firings
                     (id, trigger_id, tick_at, params, status, execution_id, error, created_at, updated_at)
                 SELECT id, trigger_id, tick_at, params, status, execution_id, error, $8, $8
                 FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::jsonb[], $5::text[],
                             $6::uuid[], $7::text[])
                      AS f(id, trigger_id, tick_at, params, status, execution_id, error)
                 ON CONFLICT DO NOTHING
                 RETURNING status",
            )
            .await?;
        let column = |f: fn(&Firing) -> Option<Uuid>| firings.iter().map(f).collect::<Vec<_>>();
        let inserted = tx
            .query(
                &insert,
                &[
                    &column(|f| Some(*f.id.as_uuid())),
                    &column(|f| Some(*f.trigger_id.as_uuid())),
                    &firings.iter().map(|f| f.tick_at).collect::<Vec<_>>(),
                    &firings.iter().map(|f| &f.params).collect::<Vec<_>>(),
                    &firings
                        .iter()
                        .map(|f| f.status.as_str())
                        .collect::<Vec<_>>(),
                    &column(|f| f.execution_id.map(|e| *e.as_uuid())),
                    &firings
                        .iter()
                        .map(|f| f.error.as_deref())
                        .collect::<Vec<_>>(),
                    &now,
                ],
            )
            .await?;
        for row in &inserted {
            if row.get::<_, &str>(0) == FiringStatus::Skipped.as_str() {
                advanced.skipped += 1;
            } else {
                advanced.pending += 1;
            }
        }
        let update = tx
            .prepare_cached(
                "UPDATE app_triggers t SET next_run = u.next_run
                 FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, next_run)
                 WHERE t.id = u.id",
            )
            .await?;
        tx.execute(&update, &[&ids, &next_runs]).await?;
        tx.commit().await?;
        Ok(advanced)
    }

    async fn next_cron_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let client = self.pool.get().await?;
        // Through the partial index on `next_run` of enabled cron triggers.
        let stmt = client
            .prepare_cached(
                "SELECT min(next_run) FROM app_triggers WHERE enabled AND type = 'cron'",
            )
            .await?;
        Ok(client.query_one(&stmt, &[]).await?.get(0))
    }

    async fn deliver(
        &self,
        event: &Event,
        owner: &str,
        now: DateTime<Utc>,
        quota: Quota,
    ) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        let mut tx = Tx::Postgres(client.transaction().await?);
        if !crate::events::mark_delivered(&mut tx, event.id, owner, now).await? {
            return Ok(0);
        }
        let Tx::Postgres(pg) = &tx else {
            return Ok(0);
        };
        let targets = pg
            .query(
                "SELECT id FROM app_triggers
                 WHERE account_id = $1 AND type = 'event' AND enabled AND rule = $2",
                &[event.account_id.as_uuid(), &event.name],
            )
            .await?;
        let mut stored = 0;
        for row in &targets {
            let trigger = TriggerId::from(row.try_get::<_, Uuid>(0)?);
            // The open firings are counted up to the quota (an index range, not a scan);
            // concurrent deliveries on other replicas may each add one past it.
            let firing = match quota.max() {
                Some(max) => {
                    let open =
                        crate::quota::count_pg(pg, max, trigger.as_uuid(), OPEN_FIRINGS).await?;
                    if open >= u64::from(max) {
                        backlogged_event_firing(trigger, event, now, quota)
                    } else {
                        event_firing(trigger, event, now)
                    }
                }
                None => event_firing(trigger, event, now),
            };
            stored += insert_firing(pg, &firing).await? as usize;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn purge(&self, finished_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM app_trigger_firings
                 WHERE status IN ('succeeded', 'failed', 'skipped') AND updated_at < $1",
                &[&finished_before],
            )
            .await?)
    }

    async fn claim_firings(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedFiring>, StoreError> {
        let client = self.pool.get().await?;
        // One statement: pick free open firings (skipping rows another replica is
        // claiming), take the lease, and stamp `last_fired_at` on first claim. A firing
        // already `running` was left by a replica that died mid-run.
        let rows = client
            .query(
                "WITH picked AS (
                         SELECT f.id, f.status AS previous_status
                         FROM app_trigger_firings f
                         WHERE f.status IN ('pending', 'running')
                           AND (f.lease_until IS NULL OR f.lease_until < $1)
                         ORDER BY f.created_at
                         LIMIT $4
                         FOR UPDATE SKIP LOCKED
                     ), claimed AS (
                         UPDATE app_trigger_firings f
                         SET status = 'running', lease_owner = $2, lease_until = $3, updated_at = $1
                         FROM picked WHERE f.id = picked.id
                         RETURNING f.id, f.trigger_id, f.tick_at, f.event_id, f.params, f.status,
                                   f.execution_id, f.error, f.created_at, picked.previous_status
                     ), fired AS (
                         UPDATE app_triggers t SET last_fired_at = $1
                         FROM claimed c WHERE t.id = c.trigger_id AND c.previous_status = 'pending'
                     )
                     SELECT c.*, t.type, t.account_id, t.function_id, t.enabled
                     FROM claimed c JOIN app_triggers t ON t.id = c.trigger_id",
                &[&now, &owner, &lease_until, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let kind: &str = row.try_get("type")?;
                Ok(ClaimedFiring {
                    firing: firing_from(row)?,
                    kind: TriggerType::parse(kind).unwrap_or(TriggerType::Webhook),
                    account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
                    function_id: FunctionId::from(row.try_get::<_, Uuid>("function_id")?),
                    trigger_enabled: row.try_get("enabled")?,
                    previous_lease_expired: row.try_get::<_, &str>("previous_status")? == "running",
                })
            })
            .collect()
    }

    async fn renew_firing(
        &self,
        id: FiringId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE app_trigger_firings SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
                &[id.as_uuid(), &owner, &lease_until],
            )
            .await?;
        Ok(n == 1)
    }

    async fn finish_firing(
        &self,
        id: FiringId,
        owner: &str,
        now: DateTime<Utc>,
        status: FiringStatus,
        execution_id: Option<ExecutionId>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        end_firing(&client, id, owner, now, (status, execution_id, error), None).await
    }

    async fn release_firing(
        &self,
        id: FiringId,
        owner: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE app_trigger_firings
                 SET status = 'pending', lease_owner = NULL, lease_until = $3
                 WHERE id = $1 AND lease_owner = $2",
                &[id.as_uuid(), &owner, &retry_at],
            )
            .await?;
        Ok(())
    }
}
