//! Gas bank rules for the API: one gas account per owner, deposits credited once per
//! `tx_id`, withdrawals reserved against `available` and queued for the settler.

use super::{
    Credited, GasAccount, GasBankError, GasStore, GasTransaction, NewDeposit, NewWithdrawal, Target,
};
use crate::clock::Clock;
use crate::error::{OrNotFound, StoreError, ValidationError};
use crate::ids::{AccountId, GasAccountId};
use crate::page::{Page, PageRequest};
use crate::quota::Quotas;
use std::sync::Arc;

/// A deposit or withdrawal as answered: the gas account after it and the ledger row;
/// `created` is false for a replayed deposit (nothing was credited).
#[derive(Debug, Clone)]
pub struct Movement {
    pub account: GasAccount,
    pub transaction: GasTransaction,
    pub created: bool,
}

#[derive(Clone)]
pub struct GasBankService {
    store: Arc<dyn GasStore>,
    clock: Arc<dyn Clock>,
    /// `MAX_PENDING_WITHDRAWALS_PER_ACCOUNT`.
    quotas: Quotas,
    /// Wakes this replica's settler when a withdrawal is queued (it is due at once).
    settler_wake: Arc<tokio::sync::Notify>,
}

/// A store's `NotFound` for a deposit's or withdrawal's gas account: the body named
/// none of the account's (CONTRACT.md §1.5: ids in the body are 400).
pub fn missing(target: &Target) -> ValidationError {
    match target {
        Target::Own => ValidationError::new(
            "gas_account_id",
            "this account has no gas account yet (POST /accounts/{id}/gasbank creates it)",
        ),
        Target::Id(_) => super::unknown_gas_account("gas_account_id"),
        Target::Wallet(_) => {
            ValidationError::new("wallet", "no gas account of this account has this wallet")
        }
    }
}

impl GasBankService {
    pub fn new(store: Arc<dyn GasStore>, clock: Arc<dyn Clock>, quotas: Quotas) -> Self {
        Self {
            store,
            clock,
            quotas,
            settler_wake: Arc::default(),
        }
    }

    pub fn waking(mut self, settler: Arc<tokio::sync::Notify>) -> Self {
        self.settler_wake = settler;
        self
    }

    /// `POST …/gasbank`: the owner's gas account, created (`true`) if it has none.
    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn ensure(
        &self,
        account: AccountId,
        wallet: Option<String>,
    ) -> Result<(GasAccount, bool), GasBankError> {
        let (gas, created) = self
            .store
            .ensure(account, wallet, self.clock.now())
            .await
            .or_not_found("account")?;
        if created {
            tracing::info!(gas_account_id = %gas.id, "gas account created");
        }
        Ok((gas, created))
    }

    /// The owner's gas account, if `id` (when given) is its id; `None` if it has none.
    pub async fn get(
        &self,
        account: AccountId,
        id: Option<GasAccountId>,
    ) -> Result<Option<GasAccount>, GasBankError> {
        let gas = self.store.gas_account(account).await?;
        match (gas, id) {
            (Some(gas), Some(id)) if gas.id != id => Err(GasBankError::NotFound("gas account")),
            (None, Some(_)) => Err(GasBankError::NotFound("gas account")),
            (gas, _) => Ok(gas),
        }
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn deposit(
        &self,
        account: AccountId,
        new: NewDeposit,
    ) -> Result<Movement, GasBankError> {
        let target = new.target.clone();
        let deposit = new.into_transaction(account, self.clock.now());
        let (gas, transaction, credited) = match self.store.deposit(&target, &deposit).await {
            Ok(done) => done,
            Err(StoreError::NotFound) => return Err(missing(&target).into()),
            Err(StoreError::Conflict(m)) => return Err(GasBankError::Conflict(m)),
            Err(StoreError::InvalidState(m)) => return Err(GasBankError::InvalidState(m)),
            Err(e) => return Err(e.into()),
        };
        let created = credited == Credited::New;
        tracing::info!(
            transaction_id = %transaction.id,
            replayed = !created,
            "gas deposit {}",
            if created { "credited" } else { "replayed; nothing credited" }
        );
        Ok(Movement {
            account: gas,
            transaction,
            created,
        })
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn withdraw(
        &self,
        account: AccountId,
        new: NewWithdrawal,
    ) -> Result<Movement, GasBankError> {
        let target = new.target.clone();
        let withdrawal = new.into_transaction(account, self.clock.now());
        let (gas, transaction) = match self
            .store
            .withdraw(&target, &withdrawal, self.quotas.pending_withdrawals)
            .await
        {
            Ok(done) => done,
            Err(StoreError::NotFound) => return Err(missing(&target).into()),
            Err(e) => return Err(e.into()),
        };
        self.settler_wake.notify_one();
        tracing::info!(transaction_id = %transaction.id, "withdrawal reserved; pending settlement");
        Ok(Movement {
            account: gas,
            transaction,
            created: true,
        })
    }

    /// The ledger, newest first; `gas_account_id` (when given) must be the owner's.
    pub async fn transactions(
        &self,
        account: AccountId,
        id: Option<GasAccountId>,
        page: PageRequest,
    ) -> Result<Page<GasTransaction>, GasBankError> {
        if id.is_some() {
            self.get(account, id).await?;
        }
        Ok(self.store.list_transactions(account, page).await?)
    }
}
