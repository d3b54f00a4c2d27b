//! The one integration-test binary (one link step keeps builds fast on 2 cores).
//! PostgreSQL tests need a server at `TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod automation;
mod bounded;
mod dashboard;
mod dispatcher;
mod functions;
mod gasbank;
mod helpers;
mod http;
mod isolation;
mod openapi;
mod oracle;
mod pricefeeds;
mod process;
mod random;
mod refresher;
mod replicas;
mod secrets;
mod settings;
mod tls;
mod tokens;
mod triggers;
