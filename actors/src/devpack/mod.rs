//! Devpack actions applied for real: each queued action becomes an effect of the
//! subsystem that owns what it creates, validated like that subsystem's HTTP route and
//! applied through its API inside the execution's transaction (see `functions::actions`).
//! This module sits above the subsystems it composes; none of them knows it.
//!
//! - `triggers.register`: a cron or event trigger for the calling function.
//! - `automation.schedule`: a job for the calling function.
//! - `oracle.createRequest`: a request to an enabled data source of the account.
//! - `gasbank.ensureAccount`: the account's gas account, as `POST …/gasbank`.
//! - `gasbank.withdraw`: a withdrawal reserved against `available`, as
//!   `POST …/gasbank/withdraw` (over the balance, the run fails and nothing applies).

use crate::automation::{Job, JobInput, NewJob};
use crate::error::StoreError;
use crate::executor::QueuedAction;
use crate::functions::{Actions, Effect, EffectError, Refused, Scope};
use crate::gasbank::{self, GasTransaction, NewWithdrawal, Target};
use crate::ids::{AccountId, GasAccountId};
use crate::oracle::{NewRequest, Request, RequestInput};
use crate::quota::{Quota, Quotas};
use crate::store::Tx;
use crate::triggers::{NewTrigger, Trigger, TriggerInput, TriggerRule, TriggerType};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The Devpack of this build.
#[derive(Debug, Clone, Copy)]
pub struct Devpack {
    /// `AUTOMATION_MAX_ATTEMPTS`, the attempts of a job it schedules.
    pub job_max_attempts: i32,
    /// The same quotas as over HTTP: a function cannot grow past them either.
    pub quotas: Quotas,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    #[serde(rename = "type")]
    kind: Option<String>,
    rule: Option<String>,
    config: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleJob {
    name: Option<String>,
    schedule: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateRequest {
    data_source_id: Option<String>,
    payload: Option<Value>,
}

fn parse<T: serde::de::DeserializeOwned>(params: &Value) -> Result<T, String> {
    serde_json::from_value(params.clone()).map_err(|e| format!("invalid params: {e}"))
}

impl Devpack {
    fn register(&self, params: &Value, scope: Scope) -> Result<Box<dyn Effect>, String> {
        let p: Register = parse(params)?;
        // Devpack registers cron and event triggers only: a webhook's secret must be shown
        // to someone, so webhooks are created over HTTP. Type, then rule, then the rest.
        let kind = match p.kind.as_deref().map(TriggerType::parse) {
            None => TriggerType::Cron,
            Some(Some(k @ (TriggerType::Cron | TriggerType::Event))) => k,
            Some(_) => return Err("type: must be cron or event".to_owned()),
        };
        TriggerRule::parse(kind, p.rule.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let input = TriggerInput {
            function_id: Some(scope.function.to_string()),
            kind: p.kind,
            rule: p.rule,
            config: p.config,
            enabled: p.enabled,
        };
        let new = NewTrigger::parse(input).map_err(|e| e.to_string())?;
        Ok(Box::new(TriggerEffect(
            new.into_trigger(scope.account, scope.now),
            self.quotas.triggers,
        )))
    }

    fn schedule(&self, params: &Value, scope: Scope) -> Result<Box<dyn Effect>, String> {
        let p: ScheduleJob = parse(params)?;
        let input = JobInput {
            function_id: Some(scope.function.to_string()),
            name: p.name,
            description: p.description,
            schedule: p.schedule,
            ..JobInput::default()
        };
        let new = NewJob::parse(input, self.job_max_attempts).map_err(|e| e.to_string())?;
        Ok(Box::new(JobEffect(
            new.into_job(scope.account, scope.now),
            self.quotas.jobs,
        )))
    }
}

impl Devpack {
    fn oracle_request(&self, params: &Value, scope: Scope) -> Result<Box<dyn Effect>, String> {
        let p: CreateRequest = parse(params)?;
        // A payload that is not a string is sent as its JSON text (CONTRACT.md §3.1).
        let payload = match p.payload {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(other) => Some(other.to_string()),
        };
        let input = RequestInput {
            data_source_id: p.data_source_id,
            payload,
        };
        let new = NewRequest::parse(input).map_err(|e| e.to_string())?;
        Ok(Box::new(OracleRequestEffect(
            new.into_request(scope.account, scope.now),
            self.quotas.open_oracle_requests,
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnsureGas {
    wallet: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GasWithdraw {
    gas_account_id: Option<String>,
    wallet: Option<String>,
    amount: Option<Value>,
    to: Option<String>,
}

impl Devpack {
    fn ensure_gas(&self, params: &Value, scope: Scope) -> Result<Box<dyn Effect>, String> {
        let p: EnsureGas = parse(params)?;
        let wallet = gasbank::wallet("wallet", p.wallet.as_deref()).map_err(|e| e.to_string())?;
        Ok(Box::new(EnsureGasEffect {
            account: scope.account,
            wallet,
            now: scope.now,
        }))
    }

    fn withdraw(&self, params: &Value, scope: Scope) -> Result<Box<dyn Effect>, String> {
        let p: GasWithdraw = parse(params)?;
        let target = match (p.gas_account_id.as_deref(), p.wallet.as_deref()) {
            (Some(_), Some(_)) => return Err("give gasAccountId or wallet, not both".to_owned()),
            (Some(id), None) => GasAccountId::parse(id.trim())
                .map(Target::Id)
                .ok_or_else(|| gasbank::unknown_gas_account("gasAccountId").to_string())?,
            (None, Some(w)) => {
                match gasbank::wallet("wallet", Some(w)).map_err(|e| e.to_string())? {
                    Some(w) => Target::Wallet(w),
                    None => Target::Own,
                }
            }
            (None, None) => Target::Own,
        };
        // A number arrives as a double (JavaScript has no other): it is read from its
        // shortest round-trip decimal, written without an exponent (Rust's `Display`),
        // so 0.000005 is "0.000005" and 0.1 is "0.1", never 0.1000000000000000055….
        let text = match &p.amount {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(match (n.as_u64(), n.as_f64()) {
                (Some(whole), _) => whole.to_string(),
                (None, Some(float)) => format!("{float}"),
                (None, None) => n.to_string(),
            }),
            Some(other) => Some(other.to_string()),
        };
        let amount = text
            .map(serde_json::value::RawValue::from_string)
            .transpose()
            .map_err(|e| format!("amount: {e}"))?;
        let new = NewWithdrawal::checked(target, amount.as_deref(), p.to.as_deref())
            .map_err(|e| e.to_string().replacen("to_address:", "to:", 1))?;
        Ok(Box::new(WithdrawEffect {
            target: new.target.clone(),
            withdrawal: new.into_transaction(scope.account, scope.now),
            quota: self.quotas.pending_withdrawals,
        }))
    }
}

impl Actions for Devpack {
    fn prepare(
        &self,
        queued: &[QueuedAction],
        scope: Scope,
    ) -> Result<Vec<Box<dyn Effect>>, Refused> {
        queued
            .iter()
            .enumerate()
            .map(|(index, action)| {
                let effect = match action.kind.as_str() {
                    "triggers.register" => self.register(&action.params, scope),
                    "automation.schedule" => self.schedule(&action.params, scope),
                    "gasbank.ensureAccount" => self.ensure_gas(&action.params, scope),
                    "gasbank.withdraw" => self.withdraw(&action.params, scope),
                    "oracle.createRequest" => self.oracle_request(&action.params, scope),
                    other => Err(format!("unknown action type {other:?}")),
                };
                effect.map_err(|reason| Refused { index, reason })
            })
            .collect()
    }
}

/// A rule the owner's insert enforced (a unique name, the function still there) refuses
/// the actions; anything else is a store failure.
fn refusal(e: StoreError) -> EffectError {
    match e {
        StoreError::Conflict(reason)
        | StoreError::LimitExceeded(reason)
        | StoreError::InvalidState(reason)
        | StoreError::InsufficientFunds(reason) => EffectError::Refused(reason),
        StoreError::NotFound => EffectError::Refused("the function no longer exists".to_owned()),
        other => EffectError::Store(other),
    }
}

/// `automation.schedule`: the job, inserted by the automation subsystem.
#[derive(Debug)]
struct JobEffect(Job, Quota);

#[async_trait::async_trait]
impl Effect for JobEffect {
    fn result(&self) -> Value {
        json!({"job_id": self.0.id.to_string()})
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> Result<(), EffectError> {
        crate::automation::insert_job(tx, &self.0, self.1)
            .await
            .map_err(refusal)
    }
}

/// `triggers.register`: the trigger, inserted by the triggers subsystem.
#[derive(Debug)]
struct TriggerEffect(Trigger, Quota);

#[async_trait::async_trait]
impl Effect for TriggerEffect {
    fn result(&self) -> Value {
        json!({"trigger_id": self.0.id.to_string()})
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> Result<(), EffectError> {
        crate::triggers::insert_trigger(tx, &self.0, self.1)
            .await
            .map_err(refusal)
    }
}

/// `oracle.createRequest`: the request, inserted by the oracle subsystem (which checks
/// the data source is an enabled one of the account).
#[derive(Debug)]
struct OracleRequestEffect(Request, Quota);

#[async_trait::async_trait]
impl Effect for OracleRequestEffect {
    fn result(&self) -> Value {
        json!({"request_id": self.0.id.to_string()})
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> Result<(), EffectError> {
        crate::oracle::insert_request(tx, &self.0, self.1)
            .await
            .map_err(|e| match e {
                // The account is there (its function is running): a missing row is the
                // data source.
                StoreError::NotFound => {
                    EffectError::Refused(crate::oracle::unusable_source().to_string())
                }
                other => refusal(other),
            })
    }
}

/// `gasbank.ensureAccount`: the account's gas account, created or given its wallet by
/// the gas bank.
#[derive(Debug)]
struct EnsureGasEffect {
    account: AccountId,
    wallet: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
}

#[async_trait::async_trait]
impl Effect for EnsureGasEffect {
    /// Results are recorded before effects apply: the gas account (the account's one,
    /// `GET …/gasbank`) is not known yet.
    fn result(&self) -> Value {
        json!({})
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> Result<(), EffectError> {
        gasbank::ensure_in(tx, self.account, self.wallet.clone(), self.now)
            .await
            .map_err(refusal)?;
        Ok(())
    }
}

/// `gasbank.withdraw`: the withdrawal, reserved by the gas bank (which refuses one over
/// `available`, failing the run).
#[derive(Debug)]
struct WithdrawEffect {
    target: Target,
    withdrawal: GasTransaction,
    quota: Quota,
}

#[async_trait::async_trait]
impl Effect for WithdrawEffect {
    fn result(&self) -> Value {
        json!({"transaction_id": self.withdrawal.id.to_string()})
    }

    async fn apply(&self, tx: &mut Tx<'_>) -> Result<(), EffectError> {
        gasbank::withdraw_in(tx, &self.target, &self.withdrawal, self.quota)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => EffectError::Refused(match self.target {
                    Target::Own => "this account has no gas account yet (Devpack.gasBank.ensureAccount creates it)".to_owned(),
                    _ => gasbank::missing_target(&self.target).to_string(),
                }),
                other => refusal(other),
            })?;
        Ok(())
    }
}
