//! The secrets actor: a thin adapter from messages to [`SecretsService`].

use super::{ResolveError, SecretMetadata, SecretName, SecretValue, SecretsError, SecretsService};
use crate::ids::AccountId;
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;
use std::collections::BTreeMap;

pub struct SecretsActor {
    service: SecretsService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl SecretsActor {
    pub fn new(service: SecretsService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for SecretsActor {
    type Context = Context<Self>;
}

stop_on_request!(SecretsActor);

#[derive(Message)]
#[rtype(result = "Result<SecretMetadata, SecretsError>")]
pub struct CreateSecret {
    pub account: AccountId,
    pub name: SecretName,
    pub value: SecretValue,
}

#[derive(Message)]
#[rtype(result = "Result<SecretMetadata, SecretsError>")]
pub struct GetSecret {
    pub account: AccountId,
    pub name: SecretName,
}

#[derive(Message)]
#[rtype(result = "Result<Page<SecretMetadata>, SecretsError>")]
pub struct ListSecrets {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<SecretMetadata, SecretsError>")]
pub struct UpdateSecret {
    pub account: AccountId,
    pub name: SecretName,
    pub value: SecretValue,
    pub if_match: Option<i64>,
}

#[derive(Message)]
#[rtype(result = "Result<(), SecretsError>")]
pub struct DeleteSecret {
    pub account: AccountId,
    pub name: SecretName,
    pub if_match: Option<i64>,
}

/// Name → latest plaintext, all or nothing (used by the function runtime only).
#[derive(Message)]
#[rtype(result = "Result<BTreeMap<String, String>, ResolveError>")]
pub struct ResolveSecrets {
    pub account: AccountId,
    pub names: Vec<SecretName>,
}

forward!(SecretsActor, CreateSecret, |svc, m| svc
    .create(m.account, m.name, m.value));
forward!(SecretsActor, GetSecret, |svc, m| svc
    .get(m.account, &m.name));
forward!(SecretsActor, ListSecrets, |svc, m| svc
    .list(m.account, m.page));
forward!(SecretsActor, UpdateSecret, |svc, m| svc
    .update(m.account, &m.name, m.value, m.if_match));
forward!(SecretsActor, DeleteSecret, |svc, m| svc
    .delete(m.account, &m.name, m.if_match));
forward!(SecretsActor, ResolveSecrets, |svc, m| svc
    .resolve(m.account, &m.names));
