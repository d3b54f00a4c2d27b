//! The gas bank actor: a thin adapter from messages to [`GasBankService`].

use super::{
    GasAccount, GasBankError, GasBankService, GasTransaction, Movement, NewDeposit, NewWithdrawal,
};
use crate::ids::{AccountId, GasAccountId};
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;

pub struct GasBankActor {
    service: GasBankService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl GasBankActor {
    pub fn new(service: GasBankService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for GasBankActor {
    type Context = Context<Self>;
}

stop_on_request!(GasBankActor);

#[derive(Message)]
#[rtype(result = "Result<(GasAccount, bool), GasBankError>")]
pub struct Ensure {
    pub account: AccountId,
    pub wallet: Option<String>,
}

#[derive(Message)]
#[rtype(result = "Result<Option<GasAccount>, GasBankError>")]
pub struct GetGasAccount {
    pub account: AccountId,
    pub id: Option<GasAccountId>,
}

#[derive(Message)]
#[rtype(result = "Result<Movement, GasBankError>")]
pub struct Deposit {
    pub account: AccountId,
    pub deposit: NewDeposit,
}

#[derive(Message)]
#[rtype(result = "Result<Movement, GasBankError>")]
pub struct Withdraw {
    pub account: AccountId,
    pub withdrawal: NewWithdrawal,
}

#[derive(Message)]
#[rtype(result = "Result<Page<GasTransaction>, GasBankError>")]
pub struct ListTransactions {
    pub account: AccountId,
    pub gas_account_id: Option<GasAccountId>,
    pub page: PageRequest,
}

forward!(GasBankActor, Ensure, |svc, m| svc
    .ensure(m.account, m.wallet));
forward!(GasBankActor, GetGasAccount, |svc, m| svc
    .get(m.account, m.id));
forward!(GasBankActor, Deposit, |svc, m| svc
    .deposit(m.account, m.deposit));
forward!(GasBankActor, Withdraw, |svc, m| svc
    .withdraw(m.account, m.withdrawal));
forward!(GasBankActor, ListTransactions, |svc, m| svc.transactions(
    m.account,
    m.gas_account_id,
    m.page
));
