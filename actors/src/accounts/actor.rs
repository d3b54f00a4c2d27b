//! The accounts actor: a thin adapter from messages to [`AccountsService`]. Each handler
//! returns a future (the mailbox never waits on a database round trip) run inside the
//! caller's span.

use super::tokens::TokensService;
use super::{Account, AccountChanges, AccountsError, AccountsService, NewAccount};
use crate::ids::AccountId;
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;

pub struct AccountsActor {
    service: AccountsService,
    /// Account-scoped API tokens (part of the accounts subsystem).
    pub(crate) tokens: TokensService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl AccountsActor {
    pub fn new(service: AccountsService, tokens: TokensService, exit: ExitGuard) -> Self {
        Self {
            service,
            tokens,
            _exit: exit,
        }
    }
}

impl Actor for AccountsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Requests are short; a deep mailbox means callers are outpacing the store.
        ctx.set_mailbox_capacity(1024);
    }
}

stop_on_request!(AccountsActor);

#[derive(Message)]
#[rtype(result = "Result<Account, AccountsError>")]
pub struct CreateAccount(pub NewAccount);

#[derive(Message)]
#[rtype(result = "Result<Account, AccountsError>")]
pub struct GetAccount(pub AccountId);

#[derive(Message)]
#[rtype(result = "Result<Page<Account>, AccountsError>")]
pub struct ListAccounts {
    pub page: PageRequest,
    /// Restricts the list to one account (account-scoped callers).
    pub only: Option<AccountId>,
}

#[derive(Message)]
#[rtype(result = "Result<Account, AccountsError>")]
pub struct UpdateAccount {
    pub id: AccountId,
    pub changes: AccountChanges,
}

#[derive(Message)]
#[rtype(result = "Result<(), AccountsError>")]
pub struct DeleteAccount(pub AccountId);

forward!(AccountsActor, CreateAccount, |svc, m| svc.create(m.0));
forward!(AccountsActor, GetAccount, |svc, m| svc.get(m.0));
forward!(AccountsActor, ListAccounts, |svc, m| svc
    .list(m.page, m.only));
forward!(AccountsActor, UpdateAccount, |svc, m| svc
    .update(m.id, m.changes));
forward!(AccountsActor, DeleteAccount, |svc, m| svc.delete(m.0));
