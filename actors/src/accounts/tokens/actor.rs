//! Token messages. Tokens belong to the accounts subsystem, so the accounts actor handles
//! them (with its `tokens` service).

use super::{ApiToken, IssuedToken, TokenName};
use crate::accounts::{AccountsActor, AccountsError};
use crate::ids::{AccountId, TokenId};
use crate::page::{Page, PageRequest};
use actix::prelude::*;
use chrono::{DateTime, Utc};

#[derive(Message)]
#[rtype(result = "Result<IssuedToken, AccountsError>")]
pub struct IssueToken {
    pub account: AccountId,
    pub name: TokenName,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Message)]
#[rtype(result = "Result<Page<ApiToken>, AccountsError>")]
pub struct ListTokens {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<ApiToken, AccountsError>")]
pub struct GetToken {
    pub account: AccountId,
    pub id: TokenId,
}

#[derive(Message)]
#[rtype(result = "Result<(), AccountsError>")]
pub struct DeleteToken {
    pub account: AccountId,
    pub id: TokenId,
}

/// The account a presented token acts for (`None`: unknown, revoked or expired).
#[derive(Message)]
#[rtype(result = "Result<Option<AccountId>, AccountsError>")]
pub struct VerifyToken {
    /// SHA-256 of the presented `slt_…` token (what the store keeps).
    pub hash: [u8; 32],
}

forward!(AccountsActor[tokens], IssueToken, |svc, m| svc.issue(
    m.account,
    m.name,
    m.expires_at
));
forward!(AccountsActor[tokens], ListTokens, |svc, m| svc
    .list(m.account, m.page));
forward!(AccountsActor[tokens], GetToken, |svc, m| svc
    .get(m.account, m.id));
forward!(AccountsActor[tokens], DeleteToken, |svc, m| svc
    .revoke(m.account, m.id));
forward!(AccountsActor[tokens], VerifyToken, |svc, m| svc
    .verify_hash(m.hash));
