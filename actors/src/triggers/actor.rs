//! The triggers actor: trigger CRUD and the webhook endpoint's domain half, a thin adapter
//! from messages to [`TriggersService`].

use super::{
    NewTrigger, Trigger, TriggerPatch, TriggerWithSecret, TriggersError, TriggersService,
    VerifiedWebhook, WebhookAccepted,
};
use crate::ids::{AccountId, TriggerId};
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;
use serde_json::Value;

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
#[rtype(result = "Result<TriggerWithSecret, TriggersError>")]
pub struct CreateTrigger {
    pub account: AccountId,
    pub trigger: NewTrigger,
}

#[derive(Message)]
#[rtype(result = "Result<Trigger, TriggersError>")]
pub struct GetTrigger {
    pub account: AccountId,
    pub id: TriggerId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Trigger>, TriggersError>")]
pub struct ListTriggers {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<TriggerWithSecret, TriggersError>")]
pub struct UpdateTrigger {
    pub account: AccountId,
    pub id: TriggerId,
    pub patch: TriggerPatch,
}

#[derive(Message)]
#[rtype(result = "Result<(), TriggersError>")]
pub struct DeleteTrigger {
    pub account: AccountId,
    pub id: TriggerId,
}

/// `POST /webhooks/{id}`: the raw body and the `X-Webhook-Signature` bytes, checked
/// against the trigger's secret.
#[derive(Message)]
#[rtype(result = "Result<VerifiedWebhook, TriggersError>")]
pub struct VerifyWebhook {
    pub id: TriggerId,
    pub body: bytes::Bytes,
    pub signature: Option<Vec<u8>>,
}

/// Stores the firing of a verified webhook call with the body as its params.
#[derive(Message)]
#[rtype(result = "Result<WebhookAccepted, TriggersError>")]
pub struct AcceptWebhook {
    pub verified: VerifiedWebhook,
    pub params: Value,
}

forward!(TriggersActor, CreateTrigger, |svc, m| svc
    .create(m.account, m.trigger));
forward!(TriggersActor, GetTrigger, |svc, m| svc.get(m.account, m.id));
forward!(TriggersActor, ListTriggers, |svc, m| svc
    .list(m.account, m.page));
forward!(TriggersActor, UpdateTrigger, |svc, m| svc
    .update(m.account, m.id, m.patch));
forward!(TriggersActor, DeleteTrigger, |svc, m| svc
    .delete(m.account, m.id));
forward!(TriggersActor, VerifyWebhook, |svc, m| async move {
    svc.verify_webhook(m.id, &m.body, m.signature.as_deref())
        .await
});
forward!(TriggersActor, AcceptWebhook, |svc, m| svc
    .accept_webhook(m.verified, m.params));
