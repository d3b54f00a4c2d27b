//! The automation actor: job CRUD and runs, a thin adapter from messages to
//! [`AutomationService`].

use super::{AutomationError, AutomationService, Job, JobPatch, NewJob, Run};
use crate::ids::{AccountId, JobId};
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;

pub struct AutomationActor {
    service: AutomationService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl AutomationActor {
    pub fn new(service: AutomationService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for AutomationActor {
    type Context = Context<Self>;
}

stop_on_request!(AutomationActor);

#[derive(Message)]
#[rtype(result = "Result<Job, AutomationError>")]
pub struct CreateJob {
    pub account: AccountId,
    pub job: NewJob,
}

#[derive(Message)]
#[rtype(result = "Result<Job, AutomationError>")]
pub struct GetJob {
    pub account: AccountId,
    pub id: JobId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Job>, AutomationError>")]
pub struct ListJobs {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Job, AutomationError>")]
pub struct UpdateJob {
    pub account: AccountId,
    pub id: JobId,
    pub patch: JobPatch,
}

#[derive(Message)]
#[rtype(result = "Result<(), AutomationError>")]
pub struct DeleteJob {
    pub account: AccountId,
    pub id: JobId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Run>, AutomationError>")]
pub struct ListRuns {
    pub account: AccountId,
    pub job: JobId,
    pub page: PageRequest,
}

forward!(AutomationActor, CreateJob, |svc, m| svc
    .create(m.account, m.job));
forward!(AutomationActor, GetJob, |svc, m| svc.get(m.account, m.id));
forward!(AutomationActor, ListJobs, |svc, m| svc
    .list(m.account, m.page));
forward!(AutomationActor, UpdateJob, |svc, m| svc
    .update(m.account, m.id, m.patch));
forward!(AutomationActor, DeleteJob, |svc, m| svc
    .delete(m.account, m.id));
forward!(AutomationActor, ListRuns, |svc, m| svc
    .list_runs(m.account, m.job, m.page));
