//! The triggers actor: a thin adapter from messages to [`TriggersService`].

use super::{
    NewTrigger, Trigger, TriggerChanges, TriggerWithSecret, TriggersService, WebhookAccepted,
    WebhookError,
};
use crate::error::{StoreError, ValidationError};
use crate::ids::{AccountId, TriggerId};
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;

pub struct TriggersActor {
    service: TriggersService,
    _exit: ExitGuard,
}

impl TriggersActor {
    pub fn new(service: TriggersService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for TriggersActor {
    type Context = Context<Self>;
}

stop_on_request!(TriggersActor);

#[derive(Message)]
#[rtype(result = "Result<Result<TriggerWithSecret, ValidationError>, StoreError>")]
pub struct CreateTrigger {
    pub account: AccountId,
    pub trigger: NewTrigger,
}

#[derive(Message)]
#[rtype(result = "Result<Trigger, StoreError>")]
pub struct GetTrigger {
    pub account: AccountId,
    pub id: TriggerId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Trigger>, StoreError>")]
pub struct ListTriggers {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Result<TriggerWithSecret, ValidationError>, StoreError>")]
pub struct UpdateTrigger {
    pub account: AccountId,
    pub id: TriggerId,
    pub changes: TriggerChanges,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteTrigger {
    pub account: AccountId,
    pub id: TriggerId,
}

/// The caller's rate limit for one trigger: `Err(seconds to wait)` when used up.
pub type Admit = Box<dyn FnOnce(TriggerId) -> Result<(), u64> + Send>;

/// `POST /webhooks/{id}` with the raw body and the `X-Webhook-Signature` header.
#[derive(Message)]
#[rtype(result = "Result<WebhookAccepted, WebhookError>")]
pub struct AcceptWebhook {
    pub id: TriggerId,
    pub signature: Option<String>,
    pub body: Vec<u8>,
    /// `Content-Type` was absent or JSON.
    pub json_media_type: bool,
    pub admit: Admit,
}

forward!(TriggersActor, CreateTrigger, |svc, m| svc
    .create(m.account, m.trigger));
forward!(TriggersActor, GetTrigger, |svc, m| svc.get(m.account, m.id));
forward!(TriggersActor, ListTriggers, |svc, m| svc
    .list(m.account, m.page));
forward!(TriggersActor, UpdateTrigger, |svc, m| svc
    .update(m.account, m.id, m.changes));
forward!(TriggersActor, DeleteTrigger, |svc, m| svc
    .delete(m.account, m.id));
forward!(TriggersActor, AcceptWebhook, |svc, m| svc.accept_webhook(m));
