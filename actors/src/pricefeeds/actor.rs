//! The price feeds actor: feed CRUD and snapshots, a thin adapter from messages to
//! [`PriceFeedsService`].

use super::service::FeedView;
use super::{FeedPatch, NewFeed, NewSnapshot, PriceFeedsError, PriceFeedsService, Snapshot};
use crate::ids::{AccountId, FeedId};
use crate::page::{Page, PageRequest};
use crate::supervisor::ExitGuard;
use actix::prelude::*;

pub struct PriceFeedsActor {
    service: PriceFeedsService,
    /// Tells the supervisor when this actor stops or crashes; dropped with the actor.
    _exit: ExitGuard,
}

impl PriceFeedsActor {
    pub fn new(service: PriceFeedsService, exit: ExitGuard) -> Self {
        Self {
            service,
            _exit: exit,
        }
    }
}

impl Actor for PriceFeedsActor {
    type Context = Context<Self>;
}

stop_on_request!(PriceFeedsActor);

#[derive(Message)]
#[rtype(result = "Result<FeedView, PriceFeedsError>")]
pub struct CreateFeed {
    pub account: AccountId,
    pub feed: NewFeed,
}

#[derive(Message)]
#[rtype(result = "Result<FeedView, PriceFeedsError>")]
pub struct GetFeed {
    pub account: AccountId,
    pub id: FeedId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<FeedView>, PriceFeedsError>")]
pub struct ListFeeds {
    pub account: AccountId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<FeedView, PriceFeedsError>")]
pub struct UpdateFeed {
    pub account: AccountId,
    pub id: FeedId,
    pub patch: FeedPatch,
}

#[derive(Message)]
#[rtype(result = "Result<(), PriceFeedsError>")]
pub struct DeleteFeed {
    pub account: AccountId,
    pub id: FeedId,
}

#[derive(Message)]
#[rtype(result = "Result<Page<Snapshot>, PriceFeedsError>")]
pub struct ListSnapshots {
    pub account: AccountId,
    pub feed: FeedId,
    pub page: PageRequest,
}

#[derive(Message)]
#[rtype(result = "Result<Snapshot, PriceFeedsError>")]
pub struct CreateSnapshot {
    pub account: AccountId,
    pub feed: FeedId,
    pub snapshot: NewSnapshot,
}

forward!(PriceFeedsActor, CreateFeed, |svc, m| svc
    .create(m.account, m.feed));
forward!(PriceFeedsActor, GetFeed, |svc, m| svc.get(m.account, m.id));
forward!(PriceFeedsActor, ListFeeds, |svc, m| svc
    .list(m.account, m.page));
forward!(PriceFeedsActor, UpdateFeed, |svc, m| svc
    .update(m.account, m.id, m.patch));
forward!(PriceFeedsActor, DeleteFeed, |svc, m| svc
    .delete(m.account, m.id));
forward!(PriceFeedsActor, ListSnapshots, |svc, m| svc
    .list_snapshots(m.account, m.feed, m.page));
forward!(PriceFeedsActor, CreateSnapshot, |svc, m| svc
    .record(m.account, m.feed, m.snapshot));
