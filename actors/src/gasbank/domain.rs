//! Gas bank values (CONTRACT.md §2.9, §3.8): gas accounts, their ledger, and the request
//! bodies that create them, checked before any store sees them.

use crate::amount::{Amount, AmountError};
use crate::error::ValidationError;
use crate::ids::{AccountId, GasAccountId, GasTxId};
use crate::page::{Keyed, PageKey};
use crate::resolver::Finish;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

/// Longest wallet address, deposit `tx_id` and from/to address, in characters.
pub const MAX_ADDRESS: usize = 128;
/// Longest stored failure message.
pub const MAX_ERROR: usize = 1024;

/// One owner's GAS: `available` may be withdrawn, `pending` is reserved by withdrawals
/// not yet settled; the balance is their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasAccount {
    pub id: GasAccountId,
    pub account_id: AccountId,
    pub wallet_address: Option<String>,
    pub available: Amount,
    pub pending: Amount,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl GasAccount {
    /// `available + pending`; both are bounded so that it fits (the stores refuse a
    /// deposit that would take it past [`Amount::MAX`]).
    pub fn balance(&self) -> Amount {
        self.available
            .checked_add(self.pending)
            .unwrap_or(Amount::MAX)
    }
}

impl Keyed for GasAccount {
    fn page_key(&self) -> PageKey {
        PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    Deposit,
    Withdrawal,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Withdrawal => "withdrawal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "deposit" => Some(Self::Deposit),
            "withdrawal" => Some(Self::Withdrawal),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Pending,
    Completed,
    Failed,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The settler's lease on a pending withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// A ledger row: a deposit (completed when made) or a withdrawal (pending until
/// settled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasTransaction {
    pub id: GasTxId,
    pub gas_account_id: GasAccountId,
    pub account_id: AccountId,
    pub kind: TxKind,
    pub amount: Amount,
    /// What reached its destination: the amount, or 0 for a failed withdrawal.
    pub net_amount: Amount,
    pub status: TxStatus,
    /// A deposit's `tx_id`; unique among deposits, case-insensitively.
    pub blockchain_tx_id: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
    pub error: Option<String>,
    /// Resolver calls made (counted when claimed).
    pub attempts: i32,
    /// When the settler may call the resolver next; `None` once settled.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease: Option<Lease>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Listed newest first: the key is read backwards.
impl Keyed for GasTransaction {
    fn page_key(&self) -> PageKey {
        PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

impl GasTransaction {
    /// The withdrawal after `finish` at `now`, its lease released. Settling sets
    /// `completed_at` and clears `next_attempt_at`; a failure also sets `net_amount` to
    /// 0 and `error`.
    pub fn finish(&self, finish: Finish, now: DateTime<Utc>) -> Self {
        let mut next = Self {
            lease: None,
            updated_at: now,
            ..self.clone()
        };
        match finish {
            Finish::Succeeded(_) => {
                next.status = TxStatus::Completed;
                next.error = None;
            }
            Finish::Failed(error) => {
                next.status = TxStatus::Failed;
                next.net_amount = Amount::ZERO;
                next.error = Some(error);
            }
            Finish::RetryAt(at) => {
                next.next_attempt_at = Some(at);
                return next;
            }
        }
        next.next_attempt_at = None;
        next.completed_at = Some(now);
        next
    }

    /// The gas account after this pending withdrawal settles as `self` now is: completed
    /// pays the reservation out, failed returns it to `available`.
    pub fn settle(&self, account: &GasAccount, now: DateTime<Utc>) -> Option<GasAccount> {
        let pending = account.pending.checked_sub(self.amount)?;
        let available = match self.status {
            TxStatus::Completed => account.available,
            TxStatus::Failed => account.available.checked_add(self.amount)?,
            TxStatus::Pending => return None,
        };
        Some(GasAccount {
            pending,
            available,
            updated_at: now,
            ..account.clone()
        })
    }
}

/// `POST …/gasbank`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = GasAccountInput)]
#[serde(deny_unknown_fields)]
pub struct EnsureInput {
    pub wallet_address: Option<String>,
}

/// The document's schema of an amount in: a decimal string or a JSON number, both read
/// from their digits (the field's type is the raw JSON text).
fn amount_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^(0|[1-9][0-9]*)(\.[0-9]{1,8})?$")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0)),
        )
        .description(Some(
            "GAS, at most 8 decimals, more than 0 (\"6.5\" or 6.5)",
        ))
        .build()
        .into()
}

/// `POST …/gasbank/deposit`. `amount` is kept as its JSON text: a number is read from
/// its digits, never through a float.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = GasDeposit)]
#[serde(deny_unknown_fields)]
pub struct DepositInput {
    pub gas_account_id: Option<String>,
    #[schema(schema_with = amount_schema, required = true)]
    pub amount: Option<Box<RawValue>>,
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub tx_id: Option<String>,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
}

/// `POST …/gasbank/withdraw`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = GasWithdrawal)]
#[serde(deny_unknown_fields)]
pub struct WithdrawInput {
    pub gas_account_id: Option<String>,
    #[schema(schema_with = amount_schema, required = true)]
    pub amount: Option<Box<RawValue>>,
    #[schema(required = true)]
    pub to_address: Option<String>,
}

/// Which of the owner's gas accounts a deposit or withdrawal names (an owner has at
/// most one; naming it only guards against a stale id or wallet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The owner's gas account, whatever its id.
    Own,
    Id(GasAccountId),
    /// By wallet, case-insensitively (Devpack `gasBank.withdraw({wallet})`).
    Wallet(String),
}

/// What a body id that names none of the account's gas accounts is refused with.
pub fn unknown_gas_account(field: &str) -> ValidationError {
    ValidationError::new(field, "no gas account with this id in this account")
}

/// A wallet address: trimmed, at most [`MAX_ADDRESS`] characters, printable ASCII
/// without spaces (Neo addresses are base58); empty means none. ASCII, so that "the same
/// wallet in another case" means one thing in both stores (Rust's and PostgreSQL's
/// lower-casing differ beyond ASCII).
pub fn wallet(field: &str, raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    ascii_key(field, raw, 0)
}

/// Text compared case-insensitively (wallets, deposit `tx_id`s): trimmed, `min` to
/// [`MAX_ADDRESS`] characters of printable ASCII.
fn ascii_key(
    field: &str,
    raw: Option<&str>,
    min: usize,
) -> Result<Option<String>, ValidationError> {
    let text = crate::validate::trimmed(field, raw.unwrap_or_default(), min, MAX_ADDRESS)?;
    if text.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(field, "must not contain whitespace"));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::new(field, "must be printable ASCII"));
    }
    Ok((!text.is_empty()).then_some(text))
}

fn target(raw: Option<&str>) -> Result<Target, ValidationError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(Target::Own),
        Some(text) => GasAccountId::parse(text)
            .map(Target::Id)
            .ok_or_else(|| unknown_gas_account("gas_account_id")),
    }
}

/// An amount to move from its JSON text: a string holding the decimal, or a number
/// whose digits are the decimal (CONTRACT.md §2.9).
pub fn amount(field: &str, raw: Option<&RawValue>) -> Result<Amount, ValidationError> {
    let Some(raw) = raw else {
        return Err(ValidationError::new(field, "is required"));
    };
    let text = raw.get();
    let parsed = if text.starts_with('"') {
        let decimal: String = serde_json::from_str(text)
            .map_err(|_| ValidationError::new(field, AmountError::Malformed.to_string()))?;
        Amount::parse_positive(&decimal)
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Amount::parse_positive(text)
    } else {
        return Err(ValidationError::new(
            field,
            "must be a decimal string such as \"6.5\" or a number",
        ));
    };
    parsed.map_err(|e| ValidationError::new(field, e.to_string()))
}

/// An optional address or id: trimmed, at most [`MAX_ADDRESS`] characters.
fn address(field: &str, raw: Option<&str>, min: usize) -> Result<Option<String>, ValidationError> {
    let text = crate::validate::trimmed(field, raw.unwrap_or_default(), min, MAX_ADDRESS)?;
    Ok((!text.is_empty()).then_some(text))
}

/// A checked deposit.
#[derive(Debug, Clone)]
pub struct NewDeposit {
    pub target: Target,
    pub amount: Amount,
    pub tx_id: String,
    pub from_address: Option<String>,
    pub to_address: Option<String>,
}

impl NewDeposit {
    pub fn parse(input: DepositInput) -> Result<Self, ValidationError> {
        let target = target(input.gas_account_id.as_deref())?;
        let amount = amount("amount", input.amount.as_deref())?;
        // Unique case-insensitively, like a wallet: the same length and ASCII rules.
        let tx_id = ascii_key("tx_id", input.tx_id.as_deref(), 1)?.unwrap_or_default();
        Ok(Self {
            target,
            amount,
            tx_id,
            from_address: address("from_address", input.from_address.as_deref(), 0)?,
            to_address: address("to_address", input.to_address.as_deref(), 0)?,
        })
    }

    /// The ledger row; its gas account is filled in by the store.
    pub fn into_transaction(self, account_id: AccountId, now: DateTime<Utc>) -> GasTransaction {
        GasTransaction {
            id: GasTxId::generate(),
            gas_account_id: GasAccountId::from(uuid::Uuid::nil()),
            account_id,
            kind: TxKind::Deposit,
            amount: self.amount,
            net_amount: self.amount,
            status: TxStatus::Completed,
            blockchain_tx_id: Some(self.tx_id),
            from_address: self.from_address,
            to_address: self.to_address,
            error: None,
            attempts: 0,
            next_attempt_at: None,
            lease: None,
            completed_at: Some(now),
            created_at: now,
            updated_at: now,
        }
    }
}

/// A checked withdrawal.
#[derive(Debug, Clone)]
pub struct NewWithdrawal {
    pub target: Target,
    pub amount: Amount,
    pub to_address: String,
}

impl NewWithdrawal {
    pub fn parse(input: WithdrawInput) -> Result<Self, ValidationError> {
        let target = target(input.gas_account_id.as_deref())?;
        Self::checked(target, input.amount.as_deref(), input.to_address.as_deref())
    }

    /// From the parts (the HTTP body's, or Devpack's `{gasAccountId | wallet, amount,
    /// to}`).
    pub fn checked(
        target: Target,
        amount: Option<&RawValue>,
        to: Option<&str>,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            target,
            amount: self::amount("amount", amount)?,
            to_address: address("to_address", to, 1)?.unwrap_or_default(),
        })
    }

    /// The pending row, due for the settler at once; its gas account is filled in by the
    /// store.
    pub fn into_transaction(self, account_id: AccountId, now: DateTime<Utc>) -> GasTransaction {
        GasTransaction {
            id: GasTxId::generate(),
            gas_account_id: GasAccountId::from(uuid::Uuid::nil()),
            account_id,
            kind: TxKind::Withdrawal,
            amount: self.amount,
            net_amount: self.amount,
            status: TxStatus::Pending,
            blockchain_tx_id: None,
            from_address: None,
            to_address: Some(self.to_address),
            error: None,
            attempts: 0,
            next_attempt_at: Some(now),
            lease: None,
            completed_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// How a deposit ended: new (credited), or a replay of the same one (nothing credited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credited {
    New,
    Replayed,
}

/// Whether `existing` (a deposit with the same `tx_id`) is a replay of `new` into
/// `gas_account`: same amount and same gas account. Anything else is a conflict.
pub fn is_replay(
    existing: &GasTransaction,
    new: &GasTransaction,
    gas_account: GasAccountId,
) -> bool {
    existing.amount == new.amount && existing.gas_account_id == gas_account
}

/// The refusal of a `tx_id` already used differently.
pub fn reused_tx_id(tx_id: &str) -> String {
    format!("tx_id {tx_id:?} was already used for a deposit of another amount or gas account")
}

/// The refusal of a withdrawal above `available`.
pub fn insufficient(available: Amount, amount: Amount) -> String {
    format!("insufficient funds: available {available}, requested {amount}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn amounts_come_from_their_decimal_text() {
        let read = |text: &str| amount("amount", Some(&raw(text))).map(|a| a.to_string());
        assert_eq!(read("6.5").unwrap(), "6.5");
        assert_eq!(read("\"6.5\"").unwrap(), "6.5");
        assert_eq!(read("0.00000001").unwrap(), "0.00000001");
        assert_eq!(
            read("\"92233720368.54775807\"").unwrap(),
            "92233720368.54775807"
        );
        // 0.1 + 0.2 is exactly 0.3 when read from text.
        assert_eq!(read("0.30000000").unwrap(), "0.3");
        for bad in [
            "0",
            "\"0\"",
            "-1",
            "1e3",
            "\"1e3\"",
            "1.000000001",
            "true",
            "null",
            "[1]",
            "{}",
            "\" 1\"",
            "\"+1\"",
            "92233720368.54775808",
        ] {
            let e = read(bad).unwrap_err();
            assert_eq!(e.field, "amount", "{bad}");
        }
        assert_eq!(amount("amount", None).unwrap_err().message, "is required");
    }

    #[test]
    fn wallets_are_trimmed_bounded_and_unspaced() {
        assert_eq!(
            wallet("w", Some("  NXabc ")).unwrap().as_deref(),
            Some("NXabc")
        );
        assert_eq!(wallet("w", Some("   ")).unwrap(), None);
        assert_eq!(wallet("w", None).unwrap(), None);
        assert!(wallet("w", Some("a b")).is_err());
        assert!(wallet("w", Some(&"x".repeat(129))).is_err());
        assert!(wallet("w", Some(&"x".repeat(128))).is_ok());
    }

    #[test]
    fn settling_moves_the_reservation_once() {
        let now = Utc::now();
        let account = GasAccount {
            id: GasAccountId::generate(),
            account_id: AccountId::generate(),
            wallet_address: None,
            available: Amount::from_base_units(10).unwrap(),
            pending: Amount::from_base_units(4).unwrap(),
            created_at: now,
            updated_at: now,
        };
        let w = NewWithdrawal {
            target: Target::Own,
            amount: Amount::from_base_units(4).unwrap(),
            to_address: "N1".into(),
        }
        .into_transaction(account.account_id, now);
        let done = w.finish(Finish::Succeeded(String::new()), now);
        let paid = done.settle(&account, now).unwrap();
        assert_eq!(
            (paid.available.base_units(), paid.pending.base_units()),
            (10, 0)
        );
        assert_eq!(done.net_amount, w.amount);
        let failed = w.finish(Finish::Failed("no".into()), now);
        let back = failed.settle(&account, now).unwrap();
        assert_eq!(
            (back.available.base_units(), back.pending.base_units()),
            (14, 0)
        );
        assert_eq!(failed.net_amount, Amount::ZERO);
        assert_eq!(failed.completed_at, Some(now));
        // Never twice: the reservation is gone after the first.
        assert!(failed.settle(&back, now).is_none());
        assert!(
            w.settle(&account, now).is_none(),
            "a pending row settles nothing"
        );
    }
}
