//! The oracle actor: data source CRUD and requests, a thin adapter from messages to
//! [`OracleService`].

use super::{
    NewRequest, NewSource, OracleError, OracleService, Request, Source, SourcePatch, Transition,
};
use crate::ids::{AccountId, RequestId, SourceId};
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;

pub struct OracleActor {
    service: OracleService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl OracleActor {
    pub fn new(service: OracleService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for OracleActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Retention at start and every `PURGE_EVERY`, dispatcher or not.
        Self::purge(self, ctx);
        ctx.run_interval(crate::work::PURGE_EVERY, Self::purge);
    }
}

impl OracleActor {
    fn purge(&mut self, ctx: &mut Context<Self>) {
        let service = self.service.clone();
        let purge = async move {
            match service.purge().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    requests = n,
                    "purged finished oracle requests past ORACLE_REQUEST_RETENTION"
                ),
                Err(e) => tracing::warn!(error = ?e, "could not purge old oracle requests"),
            }
        };
        ctx.spawn(purge.into_actor(self));
    }
}

stop_on_request!(OracleActor);

#[derive(Message)]
#[rtype(result = "Result<Source, OracleError>")]
pub struct CreateSource {
    pub account: AccountId,
    pub source: NewSource,
}

#[derive(Message)]
#[rtype(result = "Result<Source, OracleError>")]
pub struct GetSource {
    pub account: AccountId,
    pub id: SourceId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Source>, OracleError>")]
pub struct ListSources {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Source, OracleError>")]
pub struct UpdateSource {
    pub account: AccountId,
    pub id: SourceId,
    pub patch: SourcePatch,
}

#[derive(Message)]
#[rtype(result = "Result<(), OracleError>")]
pub struct DeleteSource {
    pub account: AccountId,
    pub id: SourceId,
}

#[derive(Message)]
#[rtype(result = "Result<Request, OracleError>")]
pub struct CreateRequest {
    pub account: AccountId,
    pub request: NewRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Request, OracleError>")]
pub struct GetRequest {
    pub account: AccountId,
    pub id: RequestId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Request>, OracleError>")]
pub struct ListRequests {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Request, OracleError>")]
pub struct PatchRequest {
    pub account: AccountId,
    pub id: RequestId,
    pub transition: Transition,
}

forward!(OracleActor, CreateSource, |svc, m| svc
    .create_source(m.account, m.source));
forward!(OracleActor, GetSource, |svc, m| svc
    .get_source(m.account, m.id));
forward!(OracleActor, ListSources, |svc, m| svc
    .list_sources(m.account, m.page));
forward!(OracleActor, UpdateSource, |svc, m| svc
    .update_source(m.account, m.id, m.patch));
forward!(OracleActor, DeleteSource, |svc, m| svc
    .delete_source(m.account, m.id));
forward!(OracleActor, CreateRequest, |svc, m| svc
    .create_request(m.account, m.request));
forward!(OracleActor, GetRequest, |svc, m| svc
    .get_request(m.account, m.id));
forward!(OracleActor, ListRequests, |svc, m| svc
    .list_requests(m.account, m.page));
forward!(OracleActor, PatchRequest, |svc, m| svc.transition(
    m.account,
    m.id,
    m.transition
));
