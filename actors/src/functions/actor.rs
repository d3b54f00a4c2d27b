//! The functions actor: a thin adapter from messages to [`FunctionsService`].

use super::{Execution, Function, FunctionDraft, FunctionsError, FunctionsService};
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;
use serde_json::Value;

pub struct FunctionsActor {
    service: FunctionsService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl FunctionsActor {
    pub fn new(service: FunctionsService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for FunctionsActor {
    type Context = Context<Self>;

    /// Retention runs here, on the actor that owns the executions, at start and every
    /// `PURGE_EVERY` (every replica runs it; deleting a deleted row is nothing).
    fn started(&mut self, ctx: &mut Self::Context) {
        Self::purge(self, ctx);
        ctx.run_interval(crate::work::PURGE_EVERY, Self::purge);
    }
}

impl FunctionsActor {
    fn purge(&mut self, ctx: &mut Context<Self>) {
        let service = self.service.clone();
        let purge = async move {
            match service.purge().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(executions = n, "purged executions past EXECUTION_RETENTION")
                }
                Err(e) => tracing::warn!(error = ?e, "could not purge old executions"),
            }
        };
        ctx.spawn(purge.into_actor(self));
    }
}

stop_on_request!(FunctionsActor);

#[derive(Message)]
#[rtype(result = "Result<Function, FunctionsError>")]
pub struct CreateFunction {
    pub account: AccountId,
    pub draft: FunctionDraft,
}

#[derive(Message)]
#[rtype(result = "Result<Function, FunctionsError>")]
pub struct GetFunction {
    pub account: AccountId,
    pub id: FunctionId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Function>, FunctionsError>")]
pub struct ListFunctions {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Function, FunctionsError>")]
pub struct ReplaceFunction {
    pub account: AccountId,
    pub id: FunctionId,
    pub draft: FunctionDraft,
}

#[derive(Message)]
#[rtype(result = "Result<(), FunctionsError>")]
pub struct DeleteFunction {
    pub account: AccountId,
    pub id: FunctionId,
}

#[derive(Message)]
#[rtype(result = "Result<Execution, FunctionsError>")]
pub struct ExecuteFunction {
    pub account: AccountId,
    pub id: FunctionId,
    pub params: Value,
    pub options: super::ExecOptions,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Execution>, FunctionsError>")]
pub struct ListExecutions {
    pub account: AccountId,
    pub function: FunctionId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Execution, FunctionsError>")]
pub struct GetExecution {
    pub account: AccountId,
    pub id: ExecutionId,
    pub function: Option<FunctionId>,
}

forward!(FunctionsActor, CreateFunction, |svc, m| svc
    .create(m.account, m.draft));
forward!(FunctionsActor, GetFunction, |svc, m| svc
    .get(m.account, m.id));
forward!(FunctionsActor, ListFunctions, |svc, m| svc
    .list(m.account, m.page));
forward!(FunctionsActor, ReplaceFunction, |svc, m| svc
    .replace(m.account, m.id, m.draft));
forward!(FunctionsActor, DeleteFunction, |svc, m| svc
    .delete(m.account, m.id));
forward!(FunctionsActor, ExecuteFunction, |svc, m| svc
    .execute(m.account, m.id, m.params, m.options));
forward!(FunctionsActor, ListExecutions, |svc, m| svc
    .list_executions(m.account, m.function, m.page));
forward!(FunctionsActor, GetExecution, |svc, m| svc
    .get_execution(m.account, m.id, m.function));
