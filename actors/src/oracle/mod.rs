//! The oracle: data sources (stored for the resolver, never called by the service) and
//! requests (`app_oracle_sources`, `app_oracle_requests`, owned here). The API side
//! (CRUD, PATCH by the transition table) and the `oracle_dispatcher` that asks the
//! resolver about open requests (`dispatcher.rs`). Every status change is made under the
//! request's row lock against its current status, so PATCH and the dispatcher never both
//! finish a request, and the final event is written once, in the same transaction.

mod actor;
mod dispatcher;
mod domain;
mod memory;
mod postgres;
mod service;

pub use crate::resolver::{Answer, ResolverConfig as DispatcherConfig};
pub use actor::{
    CreateRequest, CreateSource, DeleteSource, GetRequest, GetSource, ListRequests, ListSources,
    OracleActor, PatchRequest, UpdateSource,
};
pub use dispatcher::{oracle_metrics, parse_answer, Dispatcher, DispatcherActor, OracleWork};
pub use domain::{
    unusable_source, Finish, Lease, NewRequest, NewSource, Request, RequestInput, RequestStatus,
    Source, SourceInput, SourcePatch, SourcePatchInput, Transition, TransitionInput, MAX_TEXT,
};
pub use memory::MemoryOracleStore;
pub use postgres::PgOracleStore;
pub use service::OracleService;

use crate::error::StoreError;
use crate::events::Event;
use crate::ids::{AccountId, RequestId, SourceId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::store::Tx;
use chrono::{DateTime, Utc};

crate::subsystem_error!(
    /// Why an oracle request failed.
    OracleError {}
);

crate::handle_trait!(
    /// What the HTTP edge may ask of the oracle subsystem.
    OracleHandle: CreateSource,
    GetSource,
    ListSources,
    UpdateSource,
    DeleteSource,
    CreateRequest,
    GetRequest,
    ListRequests,
    PatchRequest,
);

/// Who changes a request: the API for an account (the request must be that account's),
/// or a dispatcher holding its lease (the lease must still be this one).
#[derive(Debug, Clone, Copy)]
pub enum Holder<'a> {
    Account(AccountId),
    Lease(&'a str),
}

/// A change to a request, judged against the request as it is now (under its row
/// lock); an error leaves it unchanged.
pub type Change<'c> = &'c (dyn for<'r> Fn(&'r Request) -> Result<Request, StoreError> + Sync);

/// A change to a data source, applied to it as it is now (under its row lock).
pub type SourceChange<'c> = &'c (dyn for<'s> Fn(&'s Source) -> Source + Sync);

/// The oracle tables. Both implementations give the same guarantees: names unique per
/// account (case-insensitively), a source's requests deleted with it, a request claimed
/// by one dispatcher at a time, changes made against the current status, and the final
/// event written with the final status.
#[async_trait::async_trait]
pub trait OracleStore: Send + Sync + 'static {
    /// `Conflict` on a name the account already uses; `NotFound` if the account is gone;
    /// `LimitExceeded` when it already holds `quota` sources.
    async fn create_source(&self, source: &Source, quota: Quota) -> Result<(), StoreError>;
    async fn get_source(&self, account: AccountId, id: SourceId) -> Result<Source, StoreError>;
    async fn list_sources(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Source>, StoreError>;
    /// Applies `change` to the source as it is now, under its row lock (so concurrent
    /// PATCHes of different fields both stick), and saves the result; `Conflict` on a
    /// name taken by another of the account's sources, `NotFound` if it is gone.
    async fn change_source(
        &self,
        account: AccountId,
        id: SourceId,
        change: SourceChange<'_>,
    ) -> Result<Source, StoreError>;
    /// Deletes the source and its requests.
    async fn delete_source(&self, account: AccountId, id: SourceId) -> Result<(), StoreError>;
    /// See [`insert_request`]; in a transaction of its own.
    async fn create_request(&self, request: &Request, open: Quota) -> Result<(), StoreError>;
    async fn get_request(&self, account: AccountId, id: RequestId) -> Result<Request, StoreError>;
    async fn list_requests(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Request>, StoreError>;
    /// Applies `change` to the request as it is now, under its row lock, and saves the
    /// result; a request that becomes final gets its event in the same transaction.
    /// `NotFound` if the request is gone or not the holder account's; `InvalidState`
    /// if a lease holder's lease was lost (or `change` refused).
    async fn change(
        &self,
        id: RequestId,
        holder: Holder<'_>,
        change: Change<'_>,
    ) -> Result<Request, StoreError>;
    /// Claims up to `limit` open requests due at `now` whose lease is free or expired,
    /// earliest `next_attempt_at` first: each becomes `running` (if `pending`) under
    /// `owner`'s lease until `lease_until`, which is also its `next_attempt_at` (a call
    /// lost with its replica is retried when the lease ends), and counts the call the
    /// claim is for in `attempts` (so a call lost with its replica still counts, and
    /// `ORACLE_MAX_ATTEMPTS` bounds the calls made).
    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Request>, StoreError>;
    /// Extends `owner`'s lease; `false` if the request is no longer held by it.
    async fn renew(
        &self,
        id: RequestId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The earliest `next_attempt_at` of an open request.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Retention: deletes up to `limit` requests finished before `before`; how many.
    async fn purge(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;
}

/// Inserts a request inside the caller's transaction (the API's own, or an execution's
/// for `Devpack.oracle.createRequest`). `InvalidState` if its `data_source_id` names no
/// enabled source of its account ([`unusable_source`] says so to the client);
/// `NotFound` if the account is gone; `LimitExceeded` when the account already has
/// `open` pending or running requests.
pub async fn insert_request(
    tx: &mut Tx<'_>,
    request: &Request,
    open: Quota,
) -> Result<(), StoreError> {
    match tx {
        Tx::Memory(tx) => memory::insert_request(tx, request, open),
        Tx::Postgres(tx) => postgres::insert_request(tx, request, open).await,
    }
}

/// The `oracle.request.completed` / `.failed` event of a request that just became final
/// (CONTRACT.md §3.5); `None` for any other.
pub fn final_event(request: &Request) -> Option<Event> {
    let (name, data) = match request.status {
        RequestStatus::Succeeded => (
            crate::events::ORACLE_REQUEST_COMPLETED,
            serde_json::json!({
                "request_id": request.id.to_string(),
                "data_source_id": request.data_source_id.to_string(),
                "result": request.result,
            }),
        ),
        RequestStatus::Failed => (
            crate::events::ORACLE_REQUEST_FAILED,
            serde_json::json!({
                "request_id": request.id.to_string(),
                "data_source_id": request.data_source_id.to_string(),
                "error": request.error,
            }),
        ),
        RequestStatus::Pending | RequestStatus::Running => return None,
    };
    Some(Event::new(
        request.account_id,
        name,
        data,
        request.completed_at.unwrap_or(request.updated_at),
    ))
}

/// `InvalidState` if `holder` is a lease that no longer holds `current`.
fn check_holder(current: &Request, holder: Holder<'_>) -> Result<(), StoreError> {
    match holder {
        Holder::Lease(owner) if current.lease.as_ref().map(|l| l.owner.as_str()) != Some(owner) => {
            Err(dispatcher::lease_lost())
        }
        _ => Ok(()),
    }
}

/// The event to write when `before` becomes `after`: only on the change to final.
fn event_of(before: &Request, after: &Request) -> Option<Event> {
    if before.status.is_final() {
        return None;
    }
    final_event(after)
}
