//! Bearer-token authentication and account scoping (CONTRACT.md §1.3). The middleware runs
//! before routing, so a request to a non-public path without a valid token is a 401
//! whether or not the route exists.
//!
//! Admin tokens are kept only as SHA-256 digests and compared in constant time: hashing
//! first makes the comparison independent of the presented token's length, and every
//! configured digest is compared, so timing reveals neither which token nor how much of it
//! matched. Account tokens (`slt_…`) are looked up by their hash in the shared store on
//! every request, so a revocation holds on every replica at once; only unknown tokens are
//! remembered (for `AUTH_NEGATIVE_CACHE`), and failed authentications are throttled per
//! client address (`auth_failures`).

use super::auth_failures::{FailureThrottle, KnownGood, NegativeCache};
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
use std::net::IpAddr;
use std::time::Duration;
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
    /// Failed authentications per client address, and unknown tokens remembered.
    failures: std::sync::Arc<FailureThrottle>,
    unknown_tokens: std::sync::Arc<NegativeCache>,
    known_good: std::sync::Arc<KnownGood>,
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
            failures: std::sync::Arc::new(FailureThrottle::new(5, 20)),
            unknown_tokens: std::sync::Arc::new(NegativeCache::new(Duration::from_secs(5))),
            known_good: std::sync::Arc::default(),
        }
    }

    /// `AUTH_FAILURE_RPS`, `AUTH_FAILURE_BURST` and `AUTH_NEGATIVE_CACHE` (the defaults
    /// above are the contract's).
    pub fn with_failure_limits(mut self, rps: u32, burst: u32, negative_cache: Duration) -> Self {
        self.failures = std::sync::Arc::new(FailureThrottle::new(rps, burst));
        self.unknown_tokens = std::sync::Arc::new(NegativeCache::new(negative_cache));
        self
    }

    /// 429 while the client address is over its failed-authentication budget, unless
    /// `credential` authenticated recently; checked before the credential is looked at.
    pub fn check_failures(
        &self,
        ip: Option<IpAddr>,
        credential: Option<&[u8; 32]>,
    ) -> Result<(), ApiError> {
        match self.failures.check(ip) {
            Err(_) if credential.is_some_and(|c| self.known_good.contains(c)) => Ok(()),
            other => other.map_err(ApiError::RateLimited),
        }
    }

    /// `credential` authenticated: it passes failure blocks for a while.
    pub fn vouch(&self, credential: [u8; 32]) {
        self.known_good.vouch(credential);
    }

    /// Counts a failed authentication; `Err(429)` when it went over the budget, to be
    /// answered instead of the failure itself.
    pub fn record_failure(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        self.failures.failed(ip).map_err(ApiError::RateLimited)
    }

    /// Limit each credential to `rps` requests per second with bursts of `burst`.
    pub fn with_rate_limit(mut self, rps: u32, burst: u32) -> Self {
        self.limiter = RateLimiter::new(rps, burst).map(std::sync::Arc::new);
        self
    }

    /// 429 when the presented credential (its digest) has used up its bucket. Decided
    /// after the route and scope checks (see `admit`).
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
            "/healthz" | "/readyz" | "/openapi.json" | "/random/public-key" | "/random/verify"
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
                if self.unknown_tokens.is_unknown(&presented) {
                    return Ok(None);
                }
                let account = accounts.ask(VerifyToken { hash: presented }).await?;
                if account.is_none() {
                    self.unknown_tokens.remember(presented);
                }
                Ok(account.map(|id| (Caller::Account(id), credential)))
            }
            _ => Ok(None),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A webhook trigger as a credential (its rate limit and failure-block key).
pub fn webhook_credential(trigger_id: &str) -> [u8; 32] {
    Sha256::digest(format!("webhook:{trigger_id}")).into()
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
    let authorization = req.headers().get(header::AUTHORIZATION);
    let presented = authorization.and_then(bearer_token).map(digest);
    let ip = req.peer_addr().map(|a| a.ip());
    // An address over its failure budget is refused before its credential is looked at
    // (and, for a webhook, before its body is read); admin tokens, which cost no lookup,
    // and credentials that authenticated recently pass.
    let webhook = req
        .path()
        .strip_prefix("/webhooks/")
        .map(webhook_credential);
    let checked = match (&presented, &webhook) {
        (_, Some(trigger)) => Some(trigger),
        (Some(token), None) if !public => Some(token),
        _ => None,
    };
    if let Some(credential) = checked {
        if !auth.is_admin(credential) {
            if let Err(e) = auth.check_failures(ip, Some(credential)) {
                return Ok(req.into_response(e.error_response()).map_into_right_body());
            }
        }
    }
    let presented = presented.is_some();
    let outcome = auth.authenticate(authorization).await;
    match outcome {
        Ok(Some((caller, credential))) => {
            if let (Caller::Account(_), Some(credential)) = (caller, credential) {
                auth.vouch(credential);
            }
            let mut extensions = req.extensions_mut();
            extensions.insert(caller);
            if let Some(credential) = credential {
                extensions.insert(Credential(credential));
            }
        }
        // A public path is served without credentials; a caller is recorded when present.
        Ok(None) if public => {}
        Ok(None) => {
            let err = match presented {
                // A token was presented and is unknown, expired or revoked.
                true => auth.record_failure(ip).err(),
                false => None,
            }
            .unwrap_or(ApiError::Unauthorized);
            return Ok(req
                .into_response(err.error_response())
                .map_into_right_body());
        }
        Err(_) if public => {}
        Err(e) => return Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The digest of the credential that authenticated the request (the rate limit's key).
#[derive(Clone, Copy)]
struct Credential([u8; 32]);

/// The request's rate limit has been taken.
struct Admitted;

/// Takes the per-credential rate limit, once per request, after the route and scope
/// checks (§1.5: auth → route 404/405 → scope 404/403 → 429). Called by the extractors
/// that do the scope checks.
pub(crate) fn admit(req: &HttpRequest) -> Result<(), ApiError> {
    let credential = {
        let mut extensions = req.extensions_mut();
        if extensions.get::<Admitted>().is_some() {
            return Ok(());
        }
        extensions.insert(Admitted);
        extensions.get::<Credential>().map(|c| c.0)
    };
    match req.app_data::<Auth>() {
        Some(auth) => auth.check_rate(credential),
        None => Ok(()),
    }
}

pub(crate) fn caller_of(req: &HttpRequest) -> Result<Caller, ApiError> {
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
        ready(caller_of(req).and_then(|caller| admit(req).map(|()| caller)))
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
            admit(req)?;
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
        ready((|| {
            caller_of(req)?.require_admin()?;
            // Routes under an account take the limit in `AccountPath`, after its scope
            // check; others here.
            if req.match_info().get("id").is_none() {
                admit(req)?;
            }
            Ok(AdminOnly)
        })())
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

    /// Counts lookups; knows one token.
    struct Lookups {
        known: [u8; 32],
        account: AccountId,
        count: std::sync::atomic::AtomicUsize,
    }

    impl Ask<VerifyToken> for Lookups {
        fn ask(
            &self,
            msg: VerifyToken,
        ) -> futures_util::future::BoxFuture<
            'static,
            Result<Option<AccountId>, actors::accounts::AccountsError>,
        > {
            self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let found = (msg.hash == self.known).then_some(self.account);
            Box::pin(async move { Ok(found) })
        }
    }

    #[actix_rt::test]
    async fn unknown_tokens_cost_one_lookup_per_negative_cache_period() {
        let account = AccountId::generate();
        let lookups = std::sync::Arc::new(Lookups {
            known: digest("slt_known"),
            account,
            count: Default::default(),
        });
        let a = auth()
            .with_account_tokens(lookups.clone())
            .with_failure_limits(5, 20, Duration::from_secs(60));
        let count = || lookups.count.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..5 {
            let caller = a.authenticate(Some(&header("Bearer slt_unknown"))).await;
            assert_eq!(caller.unwrap().map(|(c, _)| c), None);
        }
        assert_eq!(count(), 1, "one lookup, then remembered as unknown");
        // Known tokens are never cached: each request asks (revocation holds at once).
        for _ in 0..3 {
            let caller = a.authenticate(Some(&header("Bearer slt_known"))).await;
            assert_eq!(
                caller.unwrap().map(|(c, _)| c),
                Some(Caller::Account(account))
            );
        }
        assert_eq!(count(), 4);
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
