//! Signed random: `POST /accounts/{id}/random`, and the public `GET /random/public-key`
//! and `POST /random/verify`. Binary fields are padded standard base64.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::accounts::GetAccount;
use actors::random::{Generate, GenerateInput, NewRandom, PublicKey, RandomResult, Verify};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = RandomResult)]
struct ResultBody {
    account_id: String,
    request_id: String,
    counter: u64,
    length: usize,
    value: String,
    signature: String,
    public_key: String,
    created_at: String,
}

impl From<RandomResult> for ResultBody {
    fn from(r: RandomResult) -> Self {
        Self {
            length: r.value.len(),
            value: STANDARD.encode(&r.value),
            signature: STANDARD.encode(r.signature),
            public_key: STANDARD.encode(r.public_key),
            created_at: timestamp(&r.created_at),
            account_id: r.account_id,
            request_id: r.request_id,
            counter: r.counter,
        }
    }
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/random",
    tag = "random",
    summary = "Signed random bytes",
    request_body = actors::random::GenerateInput,
    responses((status = 200, description = "The signed result", body = ResultBody)),
)]
pub async fn generate(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<GenerateInput>,
) -> Result<HttpResponse, ApiError> {
    let random = NewRandom::parse(input)?;
    // 404 for an account that does not exist (an admin token names any id).
    state.accounts.ask(GetAccount(account)).await?;
    let result = state.random.ask(Generate { account, random }).await?;
    Ok(HttpResponse::Ok().json(ResultBody::from(result)))
}

#[utoipa::path(
    get,
    path = "/random/public-key",
    tag = "random",
    summary = "The service's Ed25519 public key",
    security(()),
    responses((status = 200, description = "The key", body = PublicKeyBody)),
)]
pub async fn public_key(
    state: web::Data<AppState>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let key = state.random.ask(PublicKey).await?;
    Ok(HttpResponse::Ok().json(PublicKeyBody {
        algorithm: "ed25519",
        public_key: STANDARD.encode(key),
        key_id: actors::random::key_id(&key),
    }))
}

/// The signing key: base64 of the 32-byte Ed25519 public key, and its id.
#[derive(Serialize, ToSchema)]
#[schema(as = RandomPublicKey)]
struct PublicKeyBody {
    #[schema(value_type = String, example = "ed25519")]
    algorithm: &'static str,
    public_key: String,
    key_id: String,
}

/// A verification's answer: `reason` says why a result is not valid (`null` if it is).
#[derive(Serialize, ToSchema)]
#[schema(as = RandomVerdict)]
struct VerdictBody {
    valid: bool,
    #[schema(value_type = Option<String>, required = true)]
    reason: Option<&'static str>,
}

/// A RandomResult as posted back: `public_key` and `length` optional.
#[derive(Deserialize, ToSchema)]
#[schema(as = RandomVerifyRequest)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    account_id: String,
    request_id: String,
    counter: u64,
    length: Option<u64>,
    value: String,
    signature: String,
    public_key: Option<String>,
    created_at: String,
}

fn decode<const N: usize>(field: &str, text: &str) -> Result<[u8; N], ApiError> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| ApiError::validation(format!("{field}: not padded standard base64")))?;
    bytes
        .try_into()
        .map_err(|_| ApiError::validation(format!("{field}: must decode to {N} bytes")))
}

#[utoipa::path(
    post,
    path = "/random/verify",
    tag = "random",
    summary = "Check a signed random result",
    security(()),
    request_body = VerifyInput,
    responses((status = 200, description = "Whether it is valid, and why not", body = VerdictBody)),
)]
pub async fn verify(
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<VerifyInput>,
) -> Result<HttpResponse, ApiError> {
    let value = STANDARD
        .decode(&input.value)
        .map_err(|_| ApiError::validation("value: not padded standard base64"))?;
    if value.len() > actors::random::MAX_LENGTH {
        return Err(ApiError::validation(format!(
            "value: at most {} bytes",
            actors::random::MAX_LENGTH
        )));
    }
    let signature = decode::<64>("signature", &input.signature)?;
    let public_key = input
        .public_key
        .as_deref()
        .map(|text| decode::<32>("public_key", text))
        .transpose()?;
    let created_at = chrono::DateTime::parse_from_rfc3339(&input.created_at)
        .map_err(|e| ApiError::validation(format!("created_at: not an RFC 3339 timestamp: {e}")))?
        .with_timezone(&chrono::Utc);
    let result = RandomResult {
        account_id: input.account_id,
        request_id: input.request_id,
        counter: input.counter,
        value,
        signature,
        // None named: the actor puts the service's key here.
        public_key: public_key.unwrap_or_default(),
        created_at,
    };
    let verdict = state
        .random
        .ask(Verify {
            result,
            claimed_key: public_key.is_some(),
            length: input.length,
        })
        .await?;
    let (valid, reason) = match verdict {
        Ok(()) => (true, None),
        Err(why) => (false, Some(why.reason())),
    };
    Ok(HttpResponse::Ok().json(VerdictBody { valid, reason }))
}
