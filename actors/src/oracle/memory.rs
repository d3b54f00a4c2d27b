//! In-memory [`OracleStore`]: sources and requests in list order per account, with the
//! indexes the PostgreSQL tables have (names per account, open requests by due time and
//! per account, requests per source, finished requests by completion), kept in step by
//! [`OracleTable::put`] and [`OracleTable::take`], through which every change goes.
//! Memory mode keeps at most [`MAX_FINISHED`] finished requests, the oldest going first.

use super::{Change, Holder, OracleStore, Request, RequestStatus, Source, SourceChange};
use crate::error::StoreError;
use crate::ids::{AccountId, RequestId, SourceId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::memory::{AccountRows, MemoryTx};
use crate::store::{MemoryDb, Row, Table, Tx};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Finished requests memory mode keeps (retention aside): the open ones are bounded by
/// the quota, these would otherwise grow with every request a tenant finishes.
pub const MAX_FINISHED: usize = 100_000;

/// `app_oracle_sources` and `app_oracle_requests`.
#[derive(Debug, Default)]
struct OracleTable {
    sources: AccountRows<SourceId, Source>,
    /// `(account, lower(name))`: names are unique per account, case-insensitively.
    names: HashMap<(AccountId, String), SourceId>,
    requests: AccountRows<RequestId, Request>,
    /// Open requests by `next_attempt_at`: what the dispatcher claims from.
    due: BTreeSet<(DateTime<Utc>, RequestId)>,
    /// Open requests per account: what the quota counts.
    open: HashMap<AccountId, HashSet<RequestId>>,
    /// Every request of a source: what deleting it removes.
    by_source: HashMap<SourceId, HashSet<RequestId>>,
    /// Finished requests by `completed_at`: what retention and [`MAX_FINISHED`] remove.
    finished: BTreeSet<(DateTime<Utc>, RequestId)>,
}

fn name_key(source: &Source) -> (AccountId, String) {
    (source.account_id, source.name.to_lowercase())
}

fn is_open(request: &Request) -> bool {
    !request.status.is_final()
}

impl OracleTable {
    /// Inserts or replaces a request, moving it in every index.
    fn put(&mut self, request: Request) {
        self.take(&request.id);
        if is_open(&request) {
            if let Some(at) = request.next_attempt_at {
                self.due.insert((at, request.id));
            }
            self.open
                .entry(request.account_id)
                .or_default()
                .insert(request.id);
        } else if let Some(at) = request.completed_at {
            self.finished.insert((at, request.id));
        }
        self.by_source
            .entry(request.data_source_id)
            .or_default()
            .insert(request.id);
        self.requests
            .insert(request.account_id, request.id, request);
    }

    /// Removes a request from the table and every index.
    fn take(&mut self, id: &RequestId) -> Option<Request> {
        let request = self.requests.remove(id)?;
        if let Some(at) = request.next_attempt_at {
            self.due.remove(&(at, *id));
        }
        if let Some(at) = request.completed_at {
            self.finished.remove(&(at, *id));
        }
        if let Some(open) = self.open.get_mut(&request.account_id) {
            open.remove(id);
            if open.is_empty() {
                self.open.remove(&request.account_id);
            }
        }
        if let Some(of_source) = self.by_source.get_mut(&request.data_source_id) {
            of_source.remove(id);
            if of_source.is_empty() {
                self.by_source.remove(&request.data_source_id);
            }
        }
        Some(request)
    }

    fn remove_source(&mut self, id: &SourceId) -> Option<Source> {
        let source = self.sources.remove(id)?;
        self.names.remove(&name_key(&source));
        for request in self.by_source.remove(id).unwrap_or_default() {
            self.take(&request);
        }
        Some(source)
    }

    fn open_count(&self, account: AccountId) -> u64 {
        self.open.get(&account).map_or(0, |o| o.len() as u64)
    }

    /// Removes up to `limit` requests finished before `before`, oldest first.
    fn remove_finished(&mut self, before: DateTime<Utc>, limit: usize) -> usize {
        let old: Vec<RequestId> = self
            .finished
            .iter()
            .take_while(|(at, _)| *at < before)
            .take(limit)
            .map(|(_, id)| *id)
            .collect();
        for id in &old {
            self.take(id);
        }
        old.len()
    }

    /// Keeps at most [`MAX_FINISHED`] finished requests.
    fn trim(&mut self) {
        while self.finished.len() > MAX_FINISHED {
            match self.finished.first().copied() {
                Some((_, id)) => {
                    self.take(&id);
                }
                None => break,
            }
        }
    }
}

impl Table for OracleTable {
    fn cascade(&mut self, parent: Row, _removed: &mut Vec<Row>) {
        if let Row::Account(account) = parent {
            for id in self.sources.ids_of(account).collect::<Vec<_>>() {
                self.remove_source(&id);
            }
        }
    }
}

fn name_conflict(name: &str) -> StoreError {
    StoreError::Conflict(format!("oracle data source {name:?} already exists"))
}

/// See [`super::insert_request`].
pub(super) fn insert_request(
    tx: &mut MemoryTx<'_>,
    request: &Request,
    open: Quota,
) -> Result<(), StoreError> {
    if !tx.tables().exists(Row::Account(request.account_id)) {
        return Err(StoreError::NotFound);
    }
    let table = tx.get::<OracleTable>();
    let usable = table
        .sources
        .get_in(request.account_id, &request.data_source_id)
        .is_some_and(|s| s.enabled);
    if !usable {
        return Err(StoreError::InvalidState(
            super::unusable_source().to_string(),
        ));
    }
    open.check(
        table.open_count(request.account_id),
        "pending or running oracle requests",
        "account",
    )?;
    table.put(request.clone());
    let id = request.id;
    tx.on_rollback(move |tables| {
        tables.get::<OracleTable>().take(&id);
    });
    Ok(())
}

pub struct MemoryOracleStore {
    db: Arc<MemoryDb>,
}

impl MemoryOracleStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl OracleStore for MemoryOracleStore {
    async fn create_source(&self, source: &Source, quota: Quota) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if !tables.exists(Row::Account(source.account_id)) {
            return Err(StoreError::NotFound);
        }
        let table = tables.get::<OracleTable>();
        // The quota first, as PostgreSQL checks it before its insert.
        table
            .sources
            .check_quota(source.account_id, quota, "oracle data sources")?;
        if table.names.contains_key(&name_key(source)) {
            return Err(name_conflict(&source.name));
        }
        table.names.insert(name_key(source), source.id);
        table
            .sources
            .insert(source.account_id, source.id, source.clone());
        Ok(())
    }

    async fn get_source(&self, account: AccountId, id: SourceId) -> Result<Source, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<OracleTable>()
            .sources
            .get_in(account, &id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list_sources(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Source>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<OracleTable>().sources.page(account, &page))
    }

    async fn change_source(
        &self,
        account: AccountId,
        id: SourceId,
        change: SourceChange<'_>,
    ) -> Result<Source, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<OracleTable>();
        let Some(current) = table.sources.get_in(account, &id) else {
            return Err(StoreError::NotFound);
        };
        let source = change(current);
        let (old, new) = (name_key(current), name_key(&source));
        if old != new {
            if table.names.contains_key(&new) {
                return Err(name_conflict(&source.name));
            }
            table.names.remove(&old);
            table.names.insert(new, source.id);
        }
        table.sources.insert(account, id, source.clone());
        Ok(source)
    }

    async fn delete_source(&self, account: AccountId, id: SourceId) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<OracleTable>();
        if table.sources.get_in(account, &id).is_none() {
            return Err(StoreError::NotFound);
        }
        table.remove_source(&id);
        Ok(())
    }

    async fn create_request(&self, request: &Request, open: Quota) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await;
        insert_request(&mut tx, request, open)?;
        tx.commit();
        Ok(())
    }

    async fn get_request(&self, account: AccountId, id: RequestId) -> Result<Request, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<OracleTable>()
            .requests
            .get_in(account, &id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list_requests(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Request>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<OracleTable>().requests.page(account, &page))
    }

    async fn change(
        &self,
        id: RequestId,
        holder: Holder<'_>,
        change: Change<'_>,
    ) -> Result<Request, StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        let Tx::Memory(memory) = &mut tx else {
            unreachable!("a memory transaction")
        };
        let table = memory.get::<OracleTable>();
        let current = match holder {
            Holder::Account(account) => table.requests.get_in(account, &id),
            Holder::Lease(_) => table.requests.get(&id),
        }
        .cloned()
        .ok_or(StoreError::NotFound)?;
        super::check_holder(&current, holder)?;
        let next = change(&current)?;
        table.put(next.clone());
        table.trim();
        let before = current.clone();
        memory.on_rollback(move |tables| tables.get::<OracleTable>().put(before));
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
        let mut tables = self.db.lock().await;
        let table = tables.get::<OracleTable>();
        let due: Vec<RequestId> = table
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .filter(|id| {
                table
                    .requests
                    .get(id)
                    .is_some_and(|r| r.lease.as_ref().is_none_or(|l| l.until <= now))
            })
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            let Some(mut request) = table.requests.get(&id).cloned() else {
                continue;
            };
            if request.status == RequestStatus::Pending {
                request.status = RequestStatus::Running;
                request.updated_at = now;
            }
            request.lease = Some(super::Lease {
                owner: owner.to_owned(),
                until: lease_until,
            });
            request.attempts = request.attempts.saturating_add(1);
            request.next_attempt_at = Some(lease_until);
            table.put(request.clone());
            claimed.push(request);
        }
        Ok(claimed)
    }

    async fn renew(
        &self,
        id: RequestId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<OracleTable>();
        let Some(mut request) = table.requests.get(&id).cloned() else {
            return Ok(false);
        };
        let open = is_open(&request);
        match &mut request.lease {
            Some(lease) if lease.owner == owner && open => lease.until = lease_until,
            _ => return Ok(false),
        }
        request.next_attempt_at = Some(lease_until);
        table.put(request);
        Ok(true)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<OracleTable>().due.first().map(|(at, _)| *at))
    }

    async fn purge(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let mut tables = self.db.lock().await;
        let removed = tables
            .get::<OracleTable>()
            .remove_finished(before, usize::try_from(limit).unwrap_or(0));
        Ok(removed as u64)
    }
}
