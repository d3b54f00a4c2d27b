//! `/accounts/{id}/gasbank` routes: the owner's gas account, deposits, withdrawals and the
//! ledger. Amounts go out as minimal decimal strings; bodies are parsed by the domain
//! (amounts from their JSON text).

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::ListParams;
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::accounts::GetAccount;
use actors::gasbank::{
    Deposit, DepositInput, Ensure, EnsureInput, GasAccount, GasBankError, GasTransaction,
    GetGasAccount, ListTransactions, Movement, NewDeposit, NewWithdrawal, Withdraw, WithdrawInput,
};
use actors::ids::GasAccountId;
use actors::page::{Keyed, Page};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Serialize, ToSchema)]
#[schema(as = GasAccount)]
pub struct GasAccountBody {
    id: String,
    account_id: String,
    #[schema(required = true)]
    wallet_address: Option<String>,
    balance: String,
    available: String,
    pending: String,
    created_at: String,
    updated_at: String,
}

impl From<GasAccount> for GasAccountBody {
    fn from(g: GasAccount) -> Self {
        Self {
            id: g.id.to_string(),
            account_id: g.account_id.to_string(),
            balance: g.balance().to_string(),
            available: g.available.to_string(),
            pending: g.pending.to_string(),
            wallet_address: g.wallet_address,
            created_at: timestamp(&g.created_at),
            updated_at: timestamp(&g.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = GasTransaction)]
pub struct TransactionBody {
    id: String,
    gas_account_id: String,
    account_id: String,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    amount: String,
    net_amount: String,
    #[schema(value_type = String)]
    status: &'static str,
    #[schema(required = true)]
    blockchain_tx_id: Option<String>,
    #[schema(required = true)]
    from_address: Option<String>,
    #[schema(required = true)]
    to_address: Option<String>,
    #[schema(required = true)]
    error: Option<String>,
    attempts: i32,
    #[schema(required = true)]
    next_attempt_at: Option<String>,
    #[schema(required = true)]
    completed_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<GasTransaction> for TransactionBody {
    fn from(t: GasTransaction) -> Self {
        Self {
            id: t.id.to_string(),
            gas_account_id: t.gas_account_id.to_string(),
            account_id: t.account_id.to_string(),
            kind: t.kind.as_str(),
            amount: t.amount.to_string(),
            net_amount: t.net_amount.to_string(),
            status: t.status.as_str(),
            blockchain_tx_id: t.blockchain_tx_id,
            from_address: t.from_address,
            to_address: t.to_address,
            error: t.error,
            attempts: t.attempts,
            next_attempt_at: t.next_attempt_at.as_ref().map(timestamp),
            completed_at: t.completed_at.as_ref().map(timestamp),
            created_at: timestamp(&t.created_at),
            updated_at: timestamp(&t.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = GasMovement)]
struct MovementBody {
    account: GasAccountBody,
    transaction: TransactionBody,
}

fn movement(m: Movement) -> HttpResponse {
    let body = MovementBody {
        account: m.account.into(),
        transaction: m.transaction.into(),
    };
    if m.created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

/// The query of the two gas bank lists: the list's own plus `gas_account_id`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GasQuery {
    /// Only this gas account (a UUID; 404 unless it is the account's own).
    gas_account_id: Option<String>,
    /// Page size, 1 or more (default 50; above 500 acts as 500).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// What `GET …/gasbank` answers: without `gas_account_id` the list protocol's page (at
/// most one item), with it that one account. Only the document uses this type: the
/// handler writes each shape directly.
#[derive(Serialize, ToSchema)]
#[schema(as = GasAccountReply)]
#[serde(untagged)]
#[allow(dead_code)]
enum GasAccountReply {
    #[schema(title = "page")]
    Page(super::pagination::ListBody<GasAccountBody>),
    #[schema(title = "one")]
    One(GasAccountBody),
}

impl GasQuery {
    /// A malformed id names no gas account: 404, as for a path id.
    fn gas_account_id(&self) -> Result<Option<GasAccountId>, ApiError> {
        self.gas_account_id
            .as_deref()
            .map(|raw| GasAccountId::parse(raw).ok_or_else(|| ApiError::not_found("gas account")))
            .transpose()
    }

    fn list(&self) -> ListParams {
        ListParams::new(self.limit.clone(), self.cursor.clone())
    }
}

/// `GET …/gasbank`: the owner's gas account as a list (of at most one), or with
/// `gas_account_id` that one account (404 unless it is the owner's).
#[utoipa::path(
    get,
    path = "/accounts/{id}/gasbank",
    tag = "gasbank",
    summary = "The account's gas account: a list of at most one, or one by gas_account_id",
    params(GasQuery),
    responses((status = 200, description = "A page holding the gas account, or with gas_account_id that account", body = GasAccountReply)),
)]
pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(query): Query<GasQuery>,
) -> Result<HttpResponse, ApiError> {
    // A bad `limit` or `cursor` (400) before an unknown id (404), as §1.5 orders them.
    query.list().page(&format!("accounts/{account}/gasbank"))?;
    let id = query.gas_account_id()?;
    if id.is_some() {
        if query.limit.is_some() || query.cursor.is_some() {
            return Err(ApiError::invalid_request(
                "limit and cursor apply to the list, not to one gas_account_id",
            ));
        }
        let gas = state.gasbank.ask(GetGasAccount { account, id }).await?;
        let gas = gas.ok_or_else(|| ApiError::not_found("gas account"))?;
        return Ok(HttpResponse::Ok().json(GasAccountBody::from(gas)));
    }
    let gasbank = state.gasbank.clone();
    list_under_account(
        &state,
        account,
        &query.list(),
        "gasbank",
        |page| async move {
            let gas = gasbank.ask(GetGasAccount { account, id: None }).await?;
            // One account per owner: the page holds it if it lies after the cursor.
            let items = gas
                .into_iter()
                .filter(|g| page.after.is_none_or(|after| g.page_key() > after))
                .collect();
            Ok::<_, ApiError>(Page { items, next: None })
        },
        GasAccountBody::from,
    )
    .await
}

/// A deposit or withdrawal refused for want of a gas account: 404 if the account itself
/// is unknown (an admin token names any id), else the refusal as it is.
async fn or_unknown_account(
    state: &AppState,
    account: actors::AccountId,
    refused: GasBankError,
) -> ApiError {
    if !matches!(refused, GasBankError::Invalid(_)) {
        return refused.into();
    }
    match state.accounts.ask(GetAccount(account)).await {
        Err(e) => e.into(),
        Ok(_) => refused.into(),
    }
}

/// `POST …/gasbank`: 201 with a new gas account, 200 with the existing one.
#[utoipa::path(
    post,
    path = "/accounts/{id}/gasbank",
    tag = "gasbank",
    summary = "Open the account's gas account (idempotent)",
    request_body = actors::gasbank::EnsureInput,
    responses((status = 201, description = "Opened", body = GasAccountBody), (status = 200, description = "It existed", body = GasAccountBody)),
)]
pub async fn ensure(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<EnsureInput>,
) -> Result<HttpResponse, ApiError> {
    let wallet = actors::gasbank::wallet("wallet_address", input.wallet_address.as_deref())?;
    let (gas, created) = state.gasbank.ask(Ensure { account, wallet }).await?;
    let body = GasAccountBody::from(gas);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/gasbank/deposit",
    tag = "gasbank",
    summary = "Record a deposit (idempotent by tx_id)",
    request_body = actors::gasbank::DepositInput,
    responses((status = 201, description = "Recorded", body = MovementBody), (status = 200, description = "Recorded before (same tx_id)", body = MovementBody)),
)]
pub async fn deposit(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<DepositInput>,
) -> Result<HttpResponse, ApiError> {
    let deposit = NewDeposit::parse(input)?;
    match state.gasbank.ask(Deposit { account, deposit }).await {
        Ok(done) => Ok(movement(done)),
        Err(e) => Err(or_unknown_account(&state, account, e).await),
    }
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/gasbank/withdraw",
    tag = "gasbank",
    summary = "Request a withdrawal, settled by the resolver",
    request_body = actors::gasbank::WithdrawInput,
    responses((status = 201, description = "Requested: the amount moves from available to pending", body = MovementBody)),
)]
pub async fn withdraw(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<WithdrawInput>,
) -> Result<HttpResponse, ApiError> {
    let withdrawal = NewWithdrawal::parse(input)?;
    match state
        .gasbank
        .ask(Withdraw {
            account,
            withdrawal,
        })
        .await
    {
        Ok(done) => Ok(movement(done)),
        Err(e) => Err(or_unknown_account(&state, account, e).await),
    }
}

/// `GET …/gasbank/transactions`: the ledger, newest first.
#[utoipa::path(
    get,
    path = "/accounts/{id}/gasbank/transactions",
    tag = "gasbank",
    summary = "List the gas bank ledger, newest first",
    params(GasQuery),
    responses((status = 200, description = "A page of transactions", body = super::pagination::ListBody<TransactionBody>)),
)]
pub async fn transactions(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(query): Query<GasQuery>,
) -> Result<HttpResponse, ApiError> {
    query
        .list()
        .page(&format!("accounts/{account}/gasbank/transactions"))?;
    let gas_account_id = query.gas_account_id()?;
    list_under_account(
        &state,
        account,
        &query.list(),
        "gasbank/transactions",
        |page| {
            state.gasbank.ask(ListTransactions {
                account,
                gas_account_id,
                page,
            })
        },
        TransactionBody::from,
    )
    .await
}
