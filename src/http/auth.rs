//! Bearer-token authentication and account scoping (CONTRACT.md §1.3). The middleware runs
//! before routing, so a request to a non-public path without a valid token is a 401
//! whether or not the route exists.
//!
//! Admin tokens are kept only as SHA-256 digests and compared in constant time: hashing
//! first makes the comparison independent of the presented token's length, and every
//! configured digest is compared, so timing reveals neither which token nor how much of it
//! matched. Account tokens (`slt_…`) are looked up by their hash in the shared store on
//! every request, so a revocation holds on every replica at once.

use super::error::ApiError;
use super::rate_limit::RateLimiter;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, ResponseError};
use actors::accounts::tokens::{VerifyToken, TOKEN_PREFIX};
use actors::supervisor::Ask;
use actors::AccountId;
use sha2::{Digest, Sha256};
use std::future::{ready, Ready};
use subtle::ConstantTimeEq;

/// Who is calling. Inserted into request extensions by the middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An admin token (or auth disabled): acts on every account.
    Admin,
    /// An account-scoped token: acts on `/accounts/{own id}/…` only.
    Account(AccountId),
}

impl Caller {
    /// Admin-only routes answer 403 to account tokens.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::Account(_) => Err(ApiError::Forbidden),
        }
    }

    /// Another account is, for an account token, an account that does not exist.
    pub fn require_access(&self, account: AccountId) -> Result<(), ApiError> {
        match self {
            Self::Account(own) if *own != account => Err(ApiError::not_found("account")),
            _ => Ok(()),
        }
    }

    /// The only account this caller may see, if restricted.
    pub fn only_account(&self) -> Option<AccountId> {
        match self {
            Self::Admin => None,
            Self::Account(id) => Some(*id),
        }
    }
}

/// Authentication configuration, registered as app data.
#[derive(Clone)]
pub struct Auth {
    /// Shared, so the per-request clone of `Auth` copies no digests.
    admin_digests: std::sync::Arc<[[u8; 32]]>,
    disabled: bool,
    metrics_public: bool,
    /// Verifies account tokens; `None` accepts admin tokens only.
    accounts: Option<std::sync::Arc<dyn Ask<VerifyToken>>>,
    /// Per-credential request rate limit; `None` when off.
    limiter: Option<std::sync::Arc<RateLimiter>>,
}

impl Auth {
    pub fn new<'a>(
        admin_tokens: impl IntoIterator<Item = &'a str>,
        disabled: bool,
        metrics_require_token: bool,
    ) -> Self {
        Self {
            admin_digests: admin_tokens.into_iter().map(digest).collect(),
            disabled,
            metrics_public: !metrics_require_token,
            accounts: None,
            limiter: None,
        }
    }

    /// Limit each credential to `rps` requests per second with bursts of `burst`.
    pub fn with_rate_limit(mut self, rps: u32, burst: u32) -> Self {
        self.limiter = RateLimiter::new(rps, burst).map(std::sync::Arc::new);
        self
    }

    /// 429 when the presented credential (its digest) has used up its bucket. Decided right
    /// after authentication, before routing.
    pub fn check_rate(&self, credential: Option<[u8; 32]>) -> Result<(), ApiError> {
        let (Some(limiter), Some(credential)) = (&self.limiter, credential) else {
            return Ok(());
        };
        limiter
            .take(credential)
            .map_err(|wait| ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64))
    }

    /// Accept account tokens, verified by the accounts actor.
    pub fn with_account_tokens(mut self, accounts: std::sync::Arc<dyn Ask<VerifyToken>>) -> Self {
        self.accounts = Some(accounts);
        self
    }

    pub fn disabled(&self) -> bool {
        self.disabled
    }

    fn is_public(&self, path: &str) -> bool {
        matches!(
            path,
            "/healthz" | "/readyz" | "/random/public-key" | "/random/verify"
        ) || (path == "/metrics" && self.metrics_public)
            || path.starts_with("/webhooks/")
    }

    fn is_admin(&self, presented: &[u8; 32]) -> bool {
        let mut matched = subtle::Choice::from(0);
        for known in self.admin_digests.iter() {
            matched |= known.ct_eq(presented);
        }
        bool::from(matched)
    }

    /// The caller, with the digest of the token it presented (hashed once per request:
    /// it serves the admin comparison, the account-token lookup and the rate limit).
    async fn authenticate(
        &self,
        authorization: Option<&header::HeaderValue>,
    ) -> Result<Option<(Caller, Option<[u8; 32]>)>, ApiError> {
        let token = authorization.and_then(bearer_token);
        let credential = token.map(digest);
        if self.disabled {
            return Ok(Some((Caller::Admin, credential)));
        }
        let (Some(token), Some(presented)) = (token, credential) else {
            return Ok(None);
        };
        if self.is_admin(&presented) {
            return Ok(Some((Caller::Admin, credential)));
        }
        match &self.accounts {
            Some(accounts) if token.starts_with(TOKEN_PREFIX) => {
                let account = accounts.ask(VerifyToken { hash: presented }).await?;
                Ok(account.map(|id| (Caller::Account(id), credential)))
            }
            _ => Ok(None),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `Bearer <token>`, scheme case-insensitive.
fn bearer_token(value: &header::HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The middleware: public paths pass; anything else needs a valid token.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(auth) = req.app_data::<Auth>().cloned() else {
        let res =
            ApiError::Internal(anyhow::anyhow!("auth configuration missing")).error_response();
        return Ok(req.into_response(res).map_into_right_body());
    };
    let public = auth.is_public(req.path());
    let outcome = auth
        .authenticate(req.headers().get(header::AUTHORIZATION))
        .await;
    match outcome {
        Ok(Some((caller, credential))) => {
            if let Err(e) = auth.check_rate(credential) {
                return Ok(req.into_response(e.error_response()).map_into_right_body());
            }
            req.extensions_mut().insert(caller);
        }
        // A public path is served without credentials; a caller is recorded when present.
        Ok(None) if public => {}
        Ok(None) => {
            let res = ApiError::Unauthorized.error_response();
            return Ok(req.into_response(res).map_into_right_body());
        }
        Err(_) if public => {}
        Err(e) => return Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn caller_of(req: &HttpRequest) -> Result<Caller, ApiError> {
    // Set by the middleware for every non-public path; a handler that asks for a caller
    // on a public path is a wiring bug, not a client error.
    req.extensions()
        .get::<Caller>()
        .copied()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no caller on an authenticated route")))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller_of(req))
    }
}

/// The `{id}` account of the path, checked against the caller's scope before anything
/// else about the request (an account token on another account gets 404). Put it first
/// among a handler's extractors.
pub struct AccountPath(pub AccountId);

impl FromRequest for AccountPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let caller = caller_of(req)?;
            let id = req
                .match_info()
                .get("id")
                .and_then(AccountId::parse)
                .ok_or_else(|| ApiError::not_found("account"))?;
            caller.require_access(id)?;
            Ok(AccountPath(id))
        })())
    }
}

/// Admin-only routes: 403 for account tokens, before the body is looked at.
pub struct AdminOnly;

impl FromRequest for AdminOnly {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            caller_of(req)
                .and_then(|c| c.require_admin())
                .map(|()| AdminOnly),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(["secret-token-0001", "another-token-02"], false, false)
    }

    fn header(value: &'static str) -> header::HeaderValue {
        header::HeaderValue::from_static(value)
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(&header("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&header("bearer   abc ")), Some("abc"));
        assert_eq!(bearer_token(&header("Basic abc")), None);
        assert_eq!(bearer_token(&header("Bearer ")), None);
        assert_eq!(bearer_token(&header("abc")), None);
    }

    #[actix_rt::test]
    async fn only_configured_admin_tokens_pass() {
        let a = auth();
        let check = |v: &'static str| {
            let a = a.clone();
            async move {
                a.authenticate(Some(&header(v)))
                    .await
                    .unwrap()
                    .map(|(caller, _)| caller)
            }
        };
        assert_eq!(check("Bearer another-token-02").await, Some(Caller::Admin));
        assert_eq!(check("Bearer another-token-03").await, None);
        assert_eq!(check("Bearer another").await, None);
        assert_eq!(
            check("Bearer slt_unknown").await,
            None,
            "no verifier: account tokens are unknown"
        );
        assert_eq!(
            a.authenticate(None)
                .await
                .unwrap()
                .map(|(caller, _)| caller),
            None
        );
    }

    #[test]
    fn scoping() {
        let own = AccountId::generate();
        let other = AccountId::generate();
        assert!(Caller::Admin.require_admin().is_ok());
        assert!(Caller::Account(own).require_admin().is_err());
        assert!(Caller::Account(own).require_access(own).is_ok());
        assert!(Caller::Account(own).require_access(other).is_err());
        assert!(Caller::Admin.require_access(other).is_ok());
    }

    #[test]
    fn public_paths() {
        let a = auth();
        assert!(a.is_public("/healthz") && a.is_public("/readyz") && a.is_public("/metrics"));
        assert!(!a.is_public("/accounts") && !a.is_public("/healthz/x"));
        assert!(!Auth::new(["t"], false, true).is_public("/metrics"));
    }
}
