//! Bearer-token authentication (CONTRACT.md §1.3). Runs before routing, so a request to a
//! non-public path without a valid token is a 401 whether or not the route exists.
//!
//! Admin tokens are kept only as SHA-256 digests and compared in constant time: hashing
//! first makes the comparison independent of the presented token's length, and every
//! configured digest is compared, so timing reveals neither which token nor how much of it
//! matched.

use super::error::ApiError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, ResponseError};
use sha2::{Digest, Sha256};
use std::future::{ready, Ready};
use subtle::ConstantTimeEq;

/// Who is calling. Inserted into request extensions by the middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// An admin token (or auth disabled): acts on every account.
    Admin,
}

/// Authentication configuration, registered as app data.
#[derive(Clone)]
pub struct Auth {
    admin_digests: Vec<[u8; 32]>,
    disabled: bool,
    metrics_public: bool,
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
        }
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

    fn authenticate(&self, req: &ServiceRequest) -> Option<Caller> {
        if self.disabled {
            return Some(Caller::Admin);
        }
        let token = bearer_token(req.headers().get(header::AUTHORIZATION)?)?;
        let presented = digest(token);
        let mut matched = subtle::Choice::from(0);
        for known in &self.admin_digests {
            matched |= known.ct_eq(&presented);
        }
        bool::from(matched).then_some(Caller::Admin)
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
    if !auth.is_public(req.path()) {
        match auth.authenticate(&req) {
            Some(caller) => {
                req.extensions_mut().insert(caller);
            }
            None => {
                let res = ApiError::Unauthorized.error_response();
                return Ok(req.into_response(res).map_into_right_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Set by the middleware for every non-public path; a handler that asks for a
        // caller on a public path is a wiring bug, not a client error.
        ready(req.extensions().get::<Caller>().copied().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("no caller on an authenticated route"))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn auth() -> Auth {
        Auth::new(["secret-token-0001", "another-token-02"], false, false)
    }

    #[test]
    fn bearer_parsing() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert_eq!(bearer_token(&v("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&v("bearer   abc ")), Some("abc"));
        assert_eq!(bearer_token(&v("Basic abc")), None);
        assert_eq!(bearer_token(&v("Bearer ")), None);
        assert_eq!(bearer_token(&v("abc")), None);
    }

    #[test]
    fn only_configured_tokens_pass() {
        let ok = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer another-token-02"))
            .to_srv_request();
        assert_eq!(auth().authenticate(&ok), Some(Caller::Admin));
        let wrong = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer another-token-03"))
            .to_srv_request();
        assert_eq!(auth().authenticate(&wrong), None);
        let prefix = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer another"))
            .to_srv_request();
        assert_eq!(auth().authenticate(&prefix), None);
        assert_eq!(
            auth().authenticate(&TestRequest::default().to_srv_request()),
            None
        );
    }

    #[test]
    fn public_paths() {
        let a = auth();
        assert!(a.is_public("/healthz") && a.is_public("/readyz") && a.is_public("/metrics"));
        assert!(!a.is_public("/accounts") && !a.is_public("/healthz/x"));
        assert!(!Auth::new(["t"], false, true).is_public("/metrics"));
    }
}
