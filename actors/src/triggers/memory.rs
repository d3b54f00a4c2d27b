//! In-memory trigger and firing stores: triggers in list order per account, firings per
//! trigger; firings go with their trigger, triggers with their function or account.
//! Every claim is atomic under the database's one lock, as a transaction would be.

use super::domain::{backlogged_event_firing, cron_firing, event_firing};
use super::{
    AdvancedCron, ClaimedFiring, Firing, FiringStatus, FiringStore, TickPlan, Trigger,
    TriggerChange, TriggerRule, TriggerStore, TriggerType,
};
use crate::error::StoreError;
use crate::error::ValidationError;
use crate::events::Event;
use crate::ids::{AccountId, EventId, ExecutionId, FiringId, TriggerId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::quota::Quota;
use crate::store::memory::AccountRows;
use crate::store::{MemoryDb, MemoryTx, Row, Table, Tx};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A trigger with its sealed webhook secret.
#[derive(Debug, Clone)]
struct TriggerRow {
    trigger: Trigger,
    secret: Option<String>,
}

impl Keyed for TriggerRow {
    fn page_key(&self) -> PageKey {
        self.trigger.page_key()
    }
}

/// A firing with its lease.
#[derive(Debug, Clone)]
struct FiringRow {
    firing: Firing,
    lease_owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
    /// Last change (retention of finished firings).
    updated_at: DateTime<Utc>,
}

/// What makes a firing unique within its trigger (the unique keys of
/// `app_trigger_firings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FiringKey {
    Tick(DateTime<Utc>),
    Event(EventId),
}

impl FiringKey {
    fn of(firing: &Firing) -> Option<Self> {
        firing
            .tick_at
            .map(Self::Tick)
            .or(firing.event_id.map(Self::Event))
    }
}

/// `app_triggers` and `app_trigger_firings`, with the indexes PostgreSQL would use: the
/// unique keys, and the open (pending or running) firings in claim order with a count
/// per trigger, so no insert, claim or quota check reads finished firings.
#[derive(Debug, Default)]
struct TriggerTable {
    triggers: AccountRows<TriggerId, TriggerRow>,
    firings: HashMap<FiringId, FiringRow>,
    by_trigger: HashMap<TriggerId, HashSet<FiringId>>,
    keys: HashSet<(TriggerId, FiringKey)>,
    open: BTreeSet<(DateTime<Utc>, FiringId)>,
    open_per_trigger: HashMap<TriggerId, usize>,
}

impl TriggerTable {
    fn remove_trigger(&mut self, id: &TriggerId) -> Option<Trigger> {
        let row = self.triggers.remove(id)?;
        for firing in self.by_trigger.get(id).cloned().unwrap_or_default() {
            self.remove_firing(&firing);
        }
        self.by_trigger.remove(id);
        Some(row.trigger)
    }

    /// Firings of `trigger` waiting to run or running.
    fn open_of(&self, trigger: TriggerId) -> usize {
        self.open_per_trigger.get(&trigger).copied().unwrap_or(0)
    }

    /// Inserts a firing unless one for the same tick or event exists; whether it did.
    fn insert_firing(&mut self, firing: Firing) -> bool {
        if let Some(key) = FiringKey::of(&firing) {
            if !self.keys.insert((firing.trigger_id, key)) {
                return false;
            }
        }
        self.by_trigger
            .entry(firing.trigger_id)
            .or_default()
            .insert(firing.id);
        if firing.status.is_open() {
            self.opened(&firing);
        }
        self.firings.insert(
            firing.id,
            FiringRow {
                updated_at: firing.created_at,
                firing,
                lease_owner: None,
                lease_until: None,
            },
        );
        true
    }

    fn opened(&mut self, firing: &Firing) {
        self.open.insert((firing.created_at, firing.id));
        *self.open_per_trigger.entry(firing.trigger_id).or_default() += 1;
    }

    /// Takes a firing out of the open index (it finished, or is removed).
    fn closed(&mut self, firing: &Firing) {
        if self.open.remove(&(firing.created_at, firing.id)) {
            if let Some(n) = self.open_per_trigger.get_mut(&firing.trigger_id) {
                *n -= 1;
                if *n == 0 {
                    self.open_per_trigger.remove(&firing.trigger_id);
                }
            }
        }
    }

    fn remove_firing(&mut self, id: &FiringId) {
        if let Some(row) = self.firings.remove(id) {
            self.closed(&row.firing);
            if let Some(key) = FiringKey::of(&row.firing) {
                self.keys.remove(&(row.firing.trigger_id, key));
            }
            if let Some(set) = self.by_trigger.get_mut(&row.firing.trigger_id) {
                set.remove(id);
            }
        }
    }

    /// The firing's row, if `owner` holds its lease.
    fn owned(&mut self, id: FiringId, owner: &str) -> Option<&mut FiringRow> {
        self.firings
            .get_mut(&id)
            .filter(|row| row.lease_owner.as_deref() == Some(owner))
    }

    /// Records a firing's outcome and clears its lease, if `owner` holds it.
    fn finish(
        &mut self,
        id: FiringId,
        owner: &str,
        now: DateTime<Utc>,
        outcome: Outcome<'_>,
    ) -> bool {
        let Some(row) = self.owned(id, owner) else {
            return false;
        };
        let (status, execution_id, error) = outcome;
        row.firing.status = status;
        row.firing.execution_id = execution_id;
        row.firing.error = error.map(str::to_owned);
        row.lease_owner = None;
        row.lease_until = None;
        row.updated_at = now;
        let firing = row.firing.clone();
        if !status.is_open() {
            self.closed(&firing);
        }
        true
    }
}

/// A firing's outcome: its status, execution and error.
type Outcome<'a> = (FiringStatus, Option<ExecutionId>, Option<&'a str>);

impl Table for TriggerTable {
    fn cascade(&mut self, parent: Row, removed: &mut Vec<Row>) {
        let gone: Vec<TriggerId> = match parent {
            Row::Account(account) => self.triggers.ids_of(account).collect(),
            Row::Function(account, function) => self
                .triggers
                .ids_of(account)
                .filter(|id| {
                    self.triggers
                        .get(id)
                        .is_some_and(|t| t.trigger.function_id == function)
                })
                .collect(),
            Row::Job(..) | Row::Trigger(..) => Vec::new(),
        };
        for id in gone {
            if let Some(trigger) = self.remove_trigger(&id) {
                removed.push(Row::Trigger(trigger.account_id, id));
            }
        }
    }

    fn contains(&self, row: Row) -> bool {
        matches!(row, Row::Trigger(account, id) if self.triggers.get_in(account, &id).is_some())
    }
}

fn free(lease_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    lease_until.is_none_or(|t| t < now)
}

/// Inserts a trigger in a memory transaction: `NotFound` unless its function exists in
/// its account, as the PostgreSQL insert checks.
pub(super) fn insert_trigger(
    tx: &mut MemoryTx<'_>,
    trigger: &Trigger,
    secret: Option<&str>,
    quota: Quota,
) -> Result<(), StoreError> {
    if !tx
        .tables()
        .exists(Row::Function(trigger.account_id, trigger.function_id))
    {
        return Err(StoreError::NotFound);
    }
    let table = tx.get::<TriggerTable>();
    table
        .triggers
        .check_quota(trigger.account_id, quota, "triggers")?;
    table.triggers.insert(
        trigger.account_id,
        trigger.id,
        TriggerRow {
            trigger: trigger.clone(),
            secret: secret.map(str::to_owned),
        },
    );
    let id = trigger.id;
    tx.on_rollback(move |tables| {
        tables.get::<TriggerTable>().remove_trigger(&id);
    });
    Ok(())
}

/// Whether `owner` still holds firing `id`'s lease at `now` (the fence of its run).
pub(super) fn holds_firing(
    tx: &mut MemoryTx<'_>,
    id: FiringId,
    owner: &str,
    now: DateTime<Utc>,
) -> bool {
    tx.get::<TriggerTable>()
        .owned(id, owner)
        .is_some_and(|r| r.lease_until.is_some_and(|until| until > now))
}

/// Settles firing `id` with its run's outcome, in the execution's transaction, if
/// `owner` still holds its lease at `now`.
pub(super) fn settle_firing(
    tx: &mut MemoryTx<'_>,
    id: FiringId,
    owner: &str,
    now: DateTime<Utc>,
    outcome: Outcome<'_>,
) -> bool {
    if !holds_firing(tx, id, owner, now) {
        return false;
    }
    let table = tx.get::<TriggerTable>();
    let Some(before) = table.firings.get(&id).cloned() else {
        return false;
    };
    table.finish(id, owner, now, outcome);
    tx.on_rollback(move |tables| {
        let table = tables.get::<TriggerTable>();
        if let Some(row) = table.firings.get_mut(&before.firing.id) {
            if !row.firing.status.is_open() && before.firing.status.is_open() {
                table.opened(&before.firing);
            }
        }
        table.firings.insert(before.firing.id, before);
    });
    true
}

pub struct MemoryTriggerStore {
    db: Arc<MemoryDb>,
}

impl MemoryTriggerStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl TriggerStore for MemoryTriggerStore {
    async fn create(
        &self,
        trigger: &Trigger,
        secret: Option<&str>,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await;
        insert_trigger(&mut tx, trigger, secret, quota)?;
        tx.commit();
        Ok(())
    }

    async fn get(&self, account: AccountId, id: TriggerId) -> Result<Trigger, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<TriggerTable>()
            .triggers
            .get_in(account, &id)
            .map(|t| t.trigger.clone())
            .ok_or(StoreError::NotFound)
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Trigger>, StoreError> {
        let mut tables = self.db.lock().await;
        let rows = tables.get::<TriggerTable>().triggers.page(account, &page);
        Ok(Page {
            items: rows.items.into_iter().map(|row| row.trigger).collect(),
            next: rows.next,
        })
    }

    async fn update(
        &self,
        account: AccountId,
        id: TriggerId,
        change: TriggerChange<'_>,
        secret: Option<&str>,
    ) -> Result<Result<Trigger, ValidationError>, StoreError> {
        let mut tables = self.db.lock().await;
        let Some(current) = tables
            .get::<TriggerTable>()
            .triggers
            .get_in(account, &id)
            .cloned()
        else {
            return Err(StoreError::NotFound);
        };
        let trigger = &match change(&current.trigger) {
            Ok(changed) => changed,
            Err(refused) => return Ok(Err(refused)),
        };
        if !tables.exists(Row::Function(trigger.account_id, trigger.function_id)) {
            return Err(StoreError::NotFound);
        }
        let table = tables.get::<TriggerTable>();
        // `last_fired_at` belongs to the worker: keep the stored value.
        let row = TriggerRow {
            trigger: Trigger {
                last_fired_at: current.trigger.last_fired_at,
                ..trigger.clone()
            },
            secret: secret.map(str::to_owned).or(current.secret),
        };
        let saved = row.trigger.clone();
        table.triggers.insert(trigger.account_id, trigger.id, row);
        Ok(Ok(saved))
    }

    async fn delete(&self, account: AccountId, id: TriggerId) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<TriggerTable>();
        if table.triggers.get_in(account, &id).is_none() {
            return Err(StoreError::NotFound);
        }
        table.remove_trigger(&id);
        tables.cascade(Row::Trigger(account, id));
        Ok(())
    }

    async fn with_secret(&self, id: TriggerId) -> Result<(Trigger, Option<String>), StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<TriggerTable>()
            .triggers
            .get(&id)
            .map(|t| (t.trigger.clone(), t.secret.clone()))
            .ok_or(StoreError::NotFound)
    }

    async fn insert_firing(&self, firing: &Firing, quota: Quota) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<TriggerTable>();
        if table.triggers.get(&firing.trigger_id).is_none() {
            return Err(StoreError::NotFound);
        }
        quota.check(
            table.open_of(firing.trigger_id) as u64,
            "pending firings",
            "trigger",
        )?;
        table.insert_firing(firing.clone());
        Ok(())
    }

    async fn sealed_secrets(
        &self,
        after: Option<TriggerId>,
        limit: i64,
    ) -> Result<Vec<(TriggerId, String)>, StoreError> {
        let mut tables = self.db.lock().await;
        let mut rows: Vec<(TriggerId, String)> = tables
            .get::<TriggerTable>()
            .triggers
            .values()
            .filter(|t| after.is_none_or(|a| t.trigger.id > a))
            .filter_map(|t| t.secret.clone().map(|s| (t.trigger.id, s)))
            .collect();
        rows.sort_by_key(|(id, _)| *id);
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(rows)
    }

    async fn replace_secret(
        &self,
        id: TriggerId,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let mut tables = self.db.lock().await;
        match tables.get::<TriggerTable>().triggers.get_mut(&id) {
            Some(row) if row.secret.as_deref() == Some(old) => {
                row.secret = Some(new.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait::async_trait]
impl FiringStore for MemoryTriggerStore {
    async fn advance_cron(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        plan: &TickPlan,
    ) -> Result<AdvancedCron, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<TriggerTable>();
        let mut due: Vec<(DateTime<Utc>, TriggerId)> = table
            .triggers
            .values()
            .map(|t| &t.trigger)
            .filter(|t| t.kind() == TriggerType::Cron && t.enabled)
            .filter_map(|t| t.next_run.filter(|n| *n <= now).map(|n| (n, t.id)))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut advanced = AdvancedCron::default();
        for (tick, id) in due {
            let Some(trigger) = table.triggers.get(&id).map(|t| t.trigger.clone()) else {
                continue;
            };
            let busy = table.open_of(id) > 0;
            let dispatch = plan(&trigger, busy);
            if table.insert_firing(cron_firing(id, tick, dispatch.skip, now)) {
                if dispatch.skip {
                    advanced.skipped += 1;
                } else {
                    advanced.pending += 1;
                }
            }
            if let Some(row) = table.triggers.get_mut(&id) {
                row.trigger.next_run = dispatch.next_run;
            }
        }
        Ok(advanced)
    }

    async fn next_cron_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables
            .get::<TriggerTable>()
            .triggers
            .values()
            .filter(|t| t.trigger.enabled && matches!(t.trigger.rule, TriggerRule::Cron(_)))
            .filter_map(|t| t.trigger.next_run)
            .min())
    }

    async fn deliver(
        &self,
        event: &Event,
        owner: &str,
        now: DateTime<Utc>,
        quota: Quota,
    ) -> Result<usize, StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        if !crate::events::mark_delivered(&mut tx, event.id, owner, now).await? {
            return Ok(0);
        }
        let Tx::Memory(memory) = &mut tx else {
            return Ok(0);
        };
        let table = memory.get::<TriggerTable>();
        let targets: Vec<TriggerId> = table
            .triggers
            .ids_of(event.account_id)
            .filter(|id| {
                table.triggers.get(id).is_some_and(|t| {
                    t.trigger.enabled
                        && matches!(t.trigger.rule, TriggerRule::Event(name) if name.as_str() == event.name)
                })
            })
            .collect();
        let mut stored = 0;
        for trigger in targets {
            let firing = match quota.max() {
                Some(max) if table.open_of(trigger) >= max as usize => {
                    backlogged_event_firing(trigger, event, now, quota)
                }
                _ => event_firing(trigger, event, now),
            };
            stored += usize::from(table.insert_firing(firing));
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn purge(&self, finished_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<TriggerTable>();
        let gone: Vec<FiringId> = table
            .firings
            .values()
            .filter(|f| !f.firing.status.is_open() && f.updated_at < finished_before)
            .map(|f| f.firing.id)
            .collect();
        for id in &gone {
            table.remove_firing(id);
        }
        Ok(gone.len() as u64)
    }

    async fn claim_firings(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedFiring>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<TriggerTable>();
        let due: Vec<FiringId> = table
            .open
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| {
                table
                    .firings
                    .get(id)
                    .is_some_and(|f| free(f.lease_until, now))
            })
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        let mut claimed = Vec::new();
        for id in due {
            let Some(trigger_id) = table.firings.get(&id).map(|f| f.firing.trigger_id) else {
                continue;
            };
            let Some(trigger) = table.triggers.get(&trigger_id).map(|t| t.trigger.clone()) else {
                continue;
            };
            let Some(row) = table.firings.get_mut(&id) else {
                continue;
            };
            let previous_lease_expired = row.firing.status == FiringStatus::Running;
            row.firing.status = FiringStatus::Running;
            row.lease_owner = Some(owner.to_owned());
            row.lease_until = Some(lease_until);
            claimed.push(ClaimedFiring {
                firing: row.firing.clone(),
                kind: trigger.kind(),
                account_id: trigger.account_id,
                function_id: trigger.function_id,
                trigger_enabled: trigger.enabled,
                previous_lease_expired,
            });
            if !previous_lease_expired {
                if let Some(t) = table.triggers.get_mut(&trigger.id) {
                    t.trigger.last_fired_at = Some(now);
                }
            }
        }
        Ok(claimed)
    }

    async fn renew_firing(
        &self,
        id: FiringId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.db.lock().await;
        match tables.get::<TriggerTable>().owned(id, owner) {
            Some(row) => {
                row.lease_until = Some(lease_until);
                Ok(true)
            }
            None => Ok(false),
        }
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
        let mut tables = self.db.lock().await;
        let table = tables.get::<TriggerTable>();
        Ok(table.finish(id, owner, now, (status, execution_id, error)))
    }

    async fn release_firing(
        &self,
        id: FiringId,
        owner: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if let Some(row) = tables.get::<TriggerTable>().owned(id, owner) {
            row.firing.status = FiringStatus::Pending;
            row.lease_owner = None;
            row.lease_until = Some(retry_at);
        }
        Ok(())
    }
}
