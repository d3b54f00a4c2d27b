//! In-memory trigger, firing and event stores, inside the shared [`MemoryDb`] so deletes
//! cascade and every claim is atomic under its one lock, as a transaction would be.

use super::domain::{cron_firing, event_firing};
use super::{
    AdvancedCron, ClaimedFiring, Firing, FiringStatus, FiringStore, NextTick, Trigger,
    TriggerStore, TriggerType,
};
use crate::error::StoreError;
use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FiringId, TriggerId};
use crate::page::{Page, PageRequest};
use crate::store::memory::{FiringRow, TriggerRow};
use crate::store::MemoryDb;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub struct MemoryTriggerStore {
    db: Arc<MemoryDb>,
}

impl MemoryTriggerStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }

    #[cfg(test)]
    pub(super) fn db_insert_event(&self, event: &Event) {
        self.db.lock().insert_event(event);
    }
}

fn free(lease_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    lease_until.is_none_or(|t| t < now)
}

#[async_trait::async_trait]
impl TriggerStore for MemoryTriggerStore {
    async fn create(&self, trigger: &Trigger, secret: Option<&str>) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        let owned = tables
            .functions
            .get(&trigger.function_id)
            .is_some_and(|f| f.account_id == trigger.account_id);
        if tables.accounts.get(&trigger.account_id).is_none() || !owned {
            return Err(StoreError::NotFound);
        }
        tables.triggers.insert(
            trigger.id,
            TriggerRow {
                trigger: trigger.clone(),
                secret: secret.map(str::to_owned),
            },
        );
        Ok(())
    }

    async fn get(&self, account: AccountId, id: TriggerId) -> Result<Trigger, StoreError> {
        self.db
            .lock()
            .triggers
            .get(&id)
            .filter(|t| t.trigger.account_id == account)
            .map(|t| t.trigger.clone())
            .ok_or(StoreError::NotFound)
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Trigger>, StoreError> {
        let tables = self.db.lock();
        let rows = tables
            .triggers
            .values()
            .map(|t| &t.trigger)
            .filter(|t| t.account_id == account);
        Ok(Page::in_list_order(rows, &page))
    }

    async fn update(&self, trigger: &Trigger, secret: Option<&str>) -> Result<Trigger, StoreError> {
        let mut tables = self.db.lock();
        if !tables.functions.contains_key(&trigger.function_id) {
            return Err(StoreError::NotFound);
        }
        match tables.triggers.get_mut(&trigger.id) {
            Some(row) if row.trigger.account_id == trigger.account_id => {
                // `last_fired_at` belongs to the worker: keep the stored value.
                let last_fired_at = row.trigger.last_fired_at;
                row.trigger = Trigger {
                    last_fired_at,
                    ..trigger.clone()
                };
                if let Some(secret) = secret {
                    row.secret = Some(secret.to_owned());
                }
                Ok(row.trigger.clone())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, account: AccountId, id: TriggerId) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        match tables.triggers.get(&id) {
            Some(t) if t.trigger.account_id == account => {
                tables.delete_trigger(&id);
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn with_secret(&self, id: TriggerId) -> Result<(Trigger, Option<String>), StoreError> {
        self.db
            .lock()
            .triggers
            .get(&id)
            .map(|t| (t.trigger.clone(), t.secret.clone()))
            .ok_or(StoreError::NotFound)
    }

    async fn insert_firing(&self, firing: &Firing) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        if !tables.triggers.contains_key(&firing.trigger_id) {
            return Err(StoreError::NotFound);
        }
        tables.firings.insert(
            firing.id,
            FiringRow {
                firing: firing.clone(),
                lease_owner: None,
                lease_until: None,
                updated_at: firing.created_at,
            },
        );
        Ok(())
    }

    async fn sealed_secrets(
        &self,
        after: Option<TriggerId>,
        limit: i64,
    ) -> Result<Vec<(TriggerId, String)>, StoreError> {
        let tables = self.db.lock();
        let mut rows: Vec<(TriggerId, String)> = tables
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
        let mut tables = self.db.lock();
        match tables.triggers.get_mut(&id) {
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
        next: &NextTick,
    ) -> Result<AdvancedCron, StoreError> {
        let mut tables = self.db.lock();
        let mut due: Vec<(DateTime<Utc>, TriggerId)> = tables
            .triggers
            .values()
            .map(|t| &t.trigger)
            .filter(|t| t.kind == TriggerType::Cron && t.enabled)
            .filter_map(|t| t.next_run.filter(|n| *n <= now).map(|n| (n, t.id)))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut advanced = AdvancedCron::default();
        for (tick, id) in due {
            let Some(trigger) = tables.triggers.get(&id).map(|t| t.trigger.clone()) else {
                continue;
            };
            let (mut duplicate, mut busy) = (false, false);
            for f in tables
                .firings
                .values()
                .filter(|f| f.firing.trigger_id == id)
            {
                duplicate |= f.firing.tick_at == Some(tick);
                busy |= f.firing.status.is_open();
            }
            if !duplicate {
                let firing = cron_firing(id, tick, busy, now);
                if busy {
                    advanced.skipped += 1;
                } else {
                    advanced.pending += 1;
                }
                tables.firings.insert(
                    firing.id,
                    FiringRow {
                        updated_at: firing.created_at,
                        firing,
                        lease_owner: None,
                        lease_until: None,
                    },
                );
            }
            if let Some(row) = tables.triggers.get_mut(&id) {
                row.trigger.next_run = next(&trigger, now);
            }
        }
        Ok(advanced)
    }

    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let mut tables = self.db.lock();
        let mut due: Vec<_> = tables
            .events
            .values()
            .filter(|e| e.delivered_at.is_none() && free(e.lease_until, now))
            .map(|e| (e.event.occurred_at, e.event.id))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut claimed = Vec::new();
        for (_, id) in due {
            if let Some(row) = tables.events.get_mut(&id) {
                row.lease_owner = Some(owner.to_owned());
                row.lease_until = Some(lease_until);
                claimed.push(row.event.clone());
            }
        }
        Ok(claimed)
    }

    async fn deliver(
        &self,
        event: &Event,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut tables = self.db.lock();
        let ours = tables
            .events
            .get(&event.id)
            .is_some_and(|e| e.delivered_at.is_none() && e.lease_owner.as_deref() == Some(owner));
        if !ours {
            return Ok(0);
        }
        let targets: Vec<TriggerId> = tables
            .triggers
            .values()
            .map(|t| &t.trigger)
            .filter(|t| {
                t.kind == TriggerType::Event
                    && t.enabled
                    && t.account_id == event.account_id
                    && t.rule == event.name
            })
            .map(|t| t.id)
            .collect();
        let mut stored = 0;
        for trigger in targets {
            let duplicate = tables
                .firings
                .values()
                .any(|f| f.firing.trigger_id == trigger && f.firing.event_id == Some(event.id));
            if duplicate {
                continue;
            }
            let firing = event_firing(trigger, event, now);
            tables.firings.insert(
                firing.id,
                FiringRow {
                    updated_at: firing.created_at,
                    firing,
                    lease_owner: None,
                    lease_until: None,
                },
            );
            stored += 1;
        }
        if let Some(row) = tables.events.get_mut(&event.id) {
            row.delivered_at = Some(now);
            row.lease_owner = None;
            row.lease_until = None;
        }
        Ok(stored)
    }

    async fn purge(
        &self,
        delivered_before: DateTime<Utc>,
        finished_before: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let mut tables = self.db.lock();
        let (events, firings) = (tables.events.len(), tables.firings.len());
        tables
            .events
            .retain(|_, e| e.delivered_at.is_none_or(|t| t >= delivered_before));
        tables
            .firings
            .retain(|_, f| f.firing.status.is_open() || f.updated_at >= finished_before);
        Ok((
            (events - tables.events.len()) as u64,
            (firings - tables.firings.len()) as u64,
        ))
    }

    async fn claim_firings(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedFiring>, StoreError> {
        let mut tables = self.db.lock();
        let mut due: Vec<_> = tables
            .firings
            .values()
            .filter(|f| f.firing.status.is_open() && free(f.lease_until, now))
            .map(|f| (f.firing.created_at, f.firing.id))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut claimed = Vec::new();
        for (_, id) in due {
            let Some(row) = tables.firings.get(&id) else {
                continue;
            };
            let Some(trigger) = tables
                .triggers
                .get(&row.firing.trigger_id)
                .map(|t| t.trigger.clone())
            else {
                continue;
            };
            let previous_lease_expired = row.firing.status == FiringStatus::Running;
            if let Some(row) = tables.firings.get_mut(&id) {
                row.firing.status = FiringStatus::Running;
                row.lease_owner = Some(owner.to_owned());
                row.lease_until = Some(lease_until);
                claimed.push(ClaimedFiring {
                    firing: row.firing.clone(),
                    kind: trigger.kind,
                    account_id: trigger.account_id,
                    function_id: trigger.function_id,
                    trigger_enabled: trigger.enabled,
                    previous_lease_expired,
                });
            }
            if !previous_lease_expired {
                if let Some(t) = tables.triggers.get_mut(&trigger.id) {
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
        let mut tables = self.db.lock();
        match tables.firings.get_mut(&id) {
            Some(row) if row.lease_owner.as_deref() == Some(owner) => {
                row.lease_until = Some(lease_until);
                Ok(true)
            }
            _ => Ok(false),
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
        let mut tables = self.db.lock();
        match tables.firings.get_mut(&id) {
            Some(row) if row.lease_owner.as_deref() == Some(owner) => {
                row.firing.status = status;
                row.firing.execution_id = execution_id;
                row.firing.error = error.map(str::to_owned);
                row.lease_owner = None;
                row.lease_until = None;
                row.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_firing(
        &self,
        id: FiringId,
        owner: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        if let Some(row) = tables.firings.get_mut(&id) {
            if row.lease_owner.as_deref() == Some(owner) {
                row.firing.status = FiringStatus::Pending;
                row.lease_owner = None;
                row.lease_until = Some(retry_at);
            }
        }
        Ok(())
    }
}
