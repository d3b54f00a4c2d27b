//! The outbox in memory mode: events with their delivery state and lease, removed with
//! their account.

use super::{Event, EventStore};
use crate::error::StoreError;
use crate::ids::EventId;
use crate::store::{MemoryDb, MemoryTx, Row, Table};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct EventRow {
    event: Event,
    delivered_at: Option<DateTime<Utc>>,
    lease_owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
}

/// `app_events`.
#[derive(Debug, Default)]
struct EventTable {
    rows: HashMap<EventId, EventRow>,
}

impl Table for EventTable {
    fn cascade(&mut self, parent: Row, _: &mut Vec<Row>) {
        if let Row::Account(account) = parent {
            self.rows.retain(|_, e| e.event.account_id != account);
        }
    }
}

pub(super) fn insert(tx: &mut MemoryTx<'_>, event: &Event) {
    tx.get::<EventTable>().rows.insert(
        event.id,
        EventRow {
            event: event.clone(),
            delivered_at: None,
            lease_owner: None,
            lease_until: None,
        },
    );
    let id = event.id;
    tx.on_rollback(move |tables| {
        tables.get::<EventTable>().rows.remove(&id);
    });
}

pub(super) fn mark_delivered(
    tx: &mut MemoryTx<'_>,
    id: EventId,
    owner: &str,
    now: DateTime<Utc>,
) -> bool {
    let Some(row) = tx.get::<EventTable>().rows.get_mut(&id) else {
        return false;
    };
    if row.delivered_at.is_some() || row.lease_owner.as_deref() != Some(owner) {
        return false;
    }
    let before = row.clone();
    row.delivered_at = Some(now);
    row.lease_owner = None;
    row.lease_until = None;
    tx.on_rollback(move |tables| {
        tables.get::<EventTable>().rows.insert(id, before);
    });
    true
}

pub struct MemoryEventStore {
    db: Arc<MemoryDb>,
}

impl MemoryEventStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl EventStore for MemoryEventStore {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<EventTable>();
        let mut due: Vec<_> = table
            .rows
            .values()
            .filter(|e| e.delivered_at.is_none() && e.lease_until.is_none_or(|t| t < now))
            .map(|e| (e.event.occurred_at, e.event.id))
            .collect();
        due.sort();
        due.truncate(usize::try_from(limit).unwrap_or(0));
        let mut claimed = Vec::new();
        for (_, id) in due {
            if let Some(row) = table.rows.get_mut(&id) {
                row.lease_owner = Some(owner.to_owned());
                row.lease_until = Some(lease_until);
                claimed.push(row.event.clone());
            }
        }
        Ok(claimed)
    }

    async fn purge(&self, delivered_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<EventTable>();
        let before = table.rows.len();
        table
            .rows
            .retain(|_, e| e.delivered_at.is_none_or(|t| t >= delivered_before));
        Ok((before - table.rows.len()) as u64)
    }
}
