//! Token issuing and verification.

use super::{ApiToken, TokenStore};
use crate::accounts::AccountsError;
use crate::clock::Clock;
use crate::error::{OrNotFound, ValidationError};
use crate::ids::{AccountId, TokenId};
use crate::page::{Page, PageRequest};
use crate::validate;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::rand_core::RngCore as _;
use chacha20poly1305::aead::OsRng;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const TOKEN_PREFIX: &str = "slt_";
const SHOWN_PREFIX_CHARS: usize = 12;

/// A token label: trimmed, 1-128 characters.
#[derive(Debug, Clone)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        validate::trimmed("name", text, 1, 128).map(Self)
    }
}

/// A freshly issued token: the only time its value exists outside the caller.
pub struct IssuedToken {
    pub token: ApiToken,
    pub value: String,
}

pub fn hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

#[derive(Clone)]
pub struct TokensService {
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
}

impl TokensService {
    pub fn new(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Issues a token; `expires_at` must be in the future.
    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn issue(
        &self,
        account: AccountId,
        name: TokenName,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken, AccountsError> {
        let now = self.clock.now();
        if expires_at.is_some_and(|t| t <= now) {
            return Err(ValidationError::new("expires_at", "must be in the future").into());
        }
        let mut random = [0u8; 32];
        OsRng.fill_bytes(&mut random);
        let value = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        let token = ApiToken {
            id: TokenId::generate(),
            account_id: account,
            name: name.0,
            token_prefix: value.chars().take(SHOWN_PREFIX_CHARS).collect(),
            expires_at: expires_at.map(crate::clock::truncate_micros),
            created_at: now,
        };
        self.store
            .insert(&token, &hash(&value))
            .await
            .or_not_found("account")?;
        tracing::info!(token_id = %token.id, "account token issued");
        Ok(IssuedToken { token, value })
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<ApiToken>, AccountsError> {
        Ok(self.store.list(account, page).await?)
    }

    pub async fn get(&self, account: AccountId, id: TokenId) -> Result<ApiToken, AccountsError> {
        Ok(self.store.get(account, id).await.or_not_found("token")?)
    }

    pub async fn revoke(&self, account: AccountId, id: TokenId) -> Result<(), AccountsError> {
        self.store.delete(account, id).await.or_not_found("token")?;
        tracing::info!(token_id = %id, "account token revoked");
        Ok(())
    }

    /// The account a presented token acts for, if it is known and not expired.
    pub async fn verify(&self, value: String) -> Result<Option<AccountId>, AccountsError> {
        if !value.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        self.verify_hash(hash(&value)).await
    }

    /// As [`Self::verify`], for a caller that already hashed the presented token.
    pub async fn verify_hash(&self, hash: [u8; 32]) -> Result<Option<AccountId>, AccountsError> {
        let now = self.clock.now();
        Ok(self
            .store
            .find_by_hash(&hash)
            .await?
            .filter(|t| t.expires_at.is_none_or(|at| at > now))
            .map(|t| t.account_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::tokens::MemoryTokenStore;
    use crate::accounts::{AccountStore, MemoryAccountStore};
    use crate::store::MemoryDb;

    async fn setup() -> (TokensService, AccountId) {
        let db = Arc::new(MemoryDb::default());
        let accounts = MemoryAccountStore::new(db.clone());
        let now = crate::clock::SystemClock.now();
        let account = crate::accounts::Account::new("o", now);
        accounts.insert(&account).await.unwrap();
        let service = TokensService::new(
            Arc::new(MemoryTokenStore::new(db)),
            Arc::new(crate::clock::SystemClock),
        );
        (service, account.id)
    }

    #[actix_rt::test]
    async fn issued_tokens_have_the_documented_shape_and_verify() {
        let (svc, account) = setup().await;
        let issued = svc
            .issue(account, TokenName::parse("ci").unwrap(), None)
            .await
            .unwrap();
        assert_eq!(issued.value.len(), 4 + 43);
        assert!(issued.value.starts_with("slt_"));
        assert_eq!(issued.token.token_prefix, issued.value[..12]);
        assert_eq!(
            svc.verify(issued.value.clone()).await.unwrap(),
            Some(account)
        );
        assert_eq!(
            svc.verify(format!("{}x", issued.value)).await.unwrap(),
            None
        );
        svc.revoke(account, issued.token.id).await.unwrap();
        assert_eq!(svc.verify(issued.value).await.unwrap(), None);
    }

    #[actix_rt::test]
    async fn expiry() {
        let (svc, account) = setup().await;
        let past = Utc::now() - chrono::Duration::seconds(1);
        assert!(svc
            .issue(account, TokenName::parse("x").unwrap(), Some(past))
            .await
            .is_err());
        let soon = Utc::now() + chrono::Duration::milliseconds(300);
        let issued = svc
            .issue(account, TokenName::parse("x").unwrap(), Some(soon))
            .await
            .unwrap();
        assert_eq!(
            svc.verify(issued.value.clone()).await.unwrap(),
            Some(account)
        );
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(
            svc.verify(issued.value).await.unwrap(),
            None,
            "expired tokens stop working"
        );
    }
}
