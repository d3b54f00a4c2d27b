//! Oracle rules for the API: source names unique per account, requests only for an
//! enabled source of the account, PATCH by the transition table against the request's
//! current status, quotas on sources and on open requests.

use super::{
    NewRequest, NewSource, OracleError, OracleStore, Request, Source, SourcePatch, Transition,
};
use crate::clock::Clock;
use crate::error::{OrNotFound, StoreError};
use crate::ids::{AccountId, RequestId, SourceId};
use crate::page::{Page, PageRequest};
use crate::quota::Quotas;
use std::sync::Arc;

#[derive(Clone)]
pub struct OracleService {
    store: Arc<dyn OracleStore>,
    clock: Arc<dyn Clock>,
    /// `MAX_ORACLE_SOURCES_PER_ACCOUNT`, `MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT`.
    quotas: Quotas,
    /// Wakes this replica's event delivery when a final event is stored, and its
    /// dispatcher when a request is created (it is due at once).
    events_wake: Arc<tokio::sync::Notify>,
    dispatcher_wake: Arc<tokio::sync::Notify>,
    /// `ORACLE_REQUEST_RETENTION`: finished requests older than this are deleted.
    retention: Option<std::time::Duration>,
}

impl OracleService {
    pub fn new(store: Arc<dyn OracleStore>, clock: Arc<dyn Clock>, quotas: Quotas) -> Self {
        Self {
            store,
            clock,
            quotas,
            events_wake: Arc::default(),
            dispatcher_wake: Arc::default(),
            retention: None,
        }
    }

    /// Deletes finished requests once they are `retention` old (`None` keeps them).
    pub fn with_retention(mut self, retention: Option<std::time::Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Retention: deletes requests finished longer than `ORACLE_REQUEST_RETENTION` ago;
    /// how many went.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        crate::work::purge_older(self.retention, self.clock.now(), |before, limit| {
            self.store.purge(before, limit)
        })
        .await
    }

    pub fn waking(
        mut self,
        events: Arc<tokio::sync::Notify>,
        dispatcher: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.events_wake = events;
        self.dispatcher_wake = dispatcher;
        self
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create_source(
        &self,
        account: AccountId,
        new: NewSource,
    ) -> Result<Source, OracleError> {
        let source = new.into_source(account, self.clock.now());
        match self
            .store
            .create_source(&source, self.quotas.oracle_sources)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(OracleError::NotFound("account")),
            Err(StoreError::Conflict(message)) => return Err(OracleError::Conflict(message)),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(source_id = %source.id, "oracle data source created");
        Ok(source)
    }

    pub async fn get_source(
        &self,
        account: AccountId,
        id: SourceId,
    ) -> Result<Source, OracleError> {
        Ok(self
            .store
            .get_source(account, id)
            .await
            .or_not_found("oracle data source")?)
    }

    pub async fn list_sources(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Source>, OracleError> {
        Ok(self.store.list_sources(account, page).await?)
    }

    #[tracing::instrument(skip_all, fields(account_id = %account, source_id = %id))]
    pub async fn update_source(
        &self,
        account: AccountId,
        id: SourceId,
        patch: SourcePatch,
    ) -> Result<Source, OracleError> {
        let now = self.clock.now();
        let change = |current: &Source| {
            let mut source = current.clone();
            patch.apply(&mut source, now);
            source
        };
        Ok(self
            .store
            .change_source(account, id, &change)
            .await
            .or_not_found("oracle data source")?)
    }

    pub async fn delete_source(&self, account: AccountId, id: SourceId) -> Result<(), OracleError> {
        Ok(self
            .store
            .delete_source(account, id)
            .await
            .or_not_found("oracle data source")?)
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create_request(
        &self,
        account: AccountId,
        new: NewRequest,
    ) -> Result<Request, OracleError> {
        let request = new.into_request(account, self.clock.now());
        match self
            .store
            .create_request(&request, self.quotas.open_oracle_requests)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(OracleError::NotFound("account")),
            Err(StoreError::InvalidState(_)) => return Err(super::unusable_source().into()),
            Err(e) => return Err(e.into()),
        }
        self.dispatcher_wake.notify_one();
        tracing::info!(request_id = %request.id, source_id = %request.data_source_id, "oracle request created");
        Ok(request)
    }

    pub async fn get_request(
        &self,
        account: AccountId,
        id: RequestId,
    ) -> Result<Request, OracleError> {
        Ok(self
            .store
            .get_request(account, id)
            .await
            .or_not_found("oracle request")?)
    }

    pub async fn list_requests(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Request>, OracleError> {
        Ok(self.store.list_requests(account, page).await?)
    }

    /// PATCH: the transition judged against the request as it is when its row is locked
    /// (a dispatcher finishing it meanwhile makes this a 409, never a second ending).
    #[tracing::instrument(skip_all, fields(account_id = %account, request_id = %id))]
    pub async fn transition(
        &self,
        account: AccountId,
        id: RequestId,
        transition: Transition,
    ) -> Result<Request, OracleError> {
        let now = self.clock.now();
        let change = |current: &Request| transition.apply(current, now);
        let request = self
            .store
            .change(id, super::Holder::Account(account), &change)
            .await
            .or_not_found("oracle request")?;
        if request.status.is_final() {
            self.events_wake.notify_one();
        }
        tracing::info!(
            status = request.status.as_str(),
            "oracle request changed by PATCH"
        );
        Ok(request)
    }
}
