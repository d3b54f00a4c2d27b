//! The random actor: a thin adapter from messages to [`RandomService`].

use super::{NewRandom, RandomError, RandomResult, RandomService};
use crate::ids::AccountId;
use crate::supervisor::ExitGuard;
use actix::prelude::*;

pub struct RandomActor {
    service: RandomService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl RandomActor {
    pub fn new(service: RandomService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for RandomActor {
    type Context = Context<Self>;
}

stop_on_request!(RandomActor);

#[derive(Message)]
#[rtype(result = "Result<RandomResult, RandomError>")]
pub struct Generate {
    pub account: AccountId,
    pub random: NewRandom,
}

/// The service's public key.
#[derive(Message)]
#[rtype(result = "Result<[u8; 32], RandomError>")]
pub struct PublicKey;

/// Verifies a result against the service's key: `Ok(Err(why))` when it does not. The
/// result's `public_key` is the one the client claimed, or, when it named none
/// (`claimed_key: false`), replaced by the service's.
#[derive(Message)]
#[rtype(result = "Result<Result<(), super::Invalid>, RandomError>")]
pub struct Verify {
    pub result: RandomResult,
    pub claimed_key: bool,
    pub length: Option<u64>,
}

forward!(RandomActor, Generate, |svc, m| svc
    .generate(m.account, m.random));
forward!(RandomActor, PublicKey, |svc, _m| {
    let key = svc.public_key();
    async move { key }
});
forward!(RandomActor, Verify, |svc, m| {
    let key = svc.public_key();
    async move {
        let key = key?;
        let mut result = m.result;
        if !m.claimed_key {
            result.public_key = key;
        }
        Ok(super::verify(&result, m.length, &key))
    }
});
