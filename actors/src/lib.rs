//! Domain core of service-layer: domain types, actor messages, actors, and the store traits
//! with their memory and PostgreSQL implementations.
//!
//! The map, top down (each room imports only rooms below it; `structure_tests.rs` fails
//! on a circle or on a reach into another subsystem's store module):
//!
//! ```text
//! composition  stores (every store for one storage mode)   devpack (Devpack actions)
//! subsystems   triggers, automation ─▶ functions ─▶ secrets, executor, events,
//!              accounts (+ accounts::tokens); pricefeeds, oracle ─▶ events
//! shared       store (MemoryDb, Tx, pool, migrations), supervisor (handles, Ask),
//!              error (Code, ErrorCode, subsystem_error!), schedule, crypto, work, page, amount,
//!              ids, clock, health, metrics, validate, patch, duration, outbound
//! ```
//!
//! A subsystem folder: `domain.rs` (types and the parsing of requests into them),
//! `service.rs` (rules), `actor.rs` (messages, a thin actor), `memory.rs`/`postgres.rs`
//! (its tables, private), `mod.rs` (store trait, its error, its handle trait, and the
//! transaction API other rooms may use). docs/ARCHITECTURE.md has the table owners and
//! the request and Devpack flows.
//!
//! Architecture invariant: this crate never depends on actix-web. The HTTP edge (the root
//! `service-layer` package) turns requests into the input types defined here and sends
//! messages to the actors; nothing in here knows about status codes or headers.

/// Implements `Handler<Traced<$msg>>` for an actor with a `service` (or named) field: the service
/// call runs as a future inside the caller's span, so the mailbox never waits on I/O.
macro_rules! forward {
    ($actor:ty, $msg:ty, |$svc:ident, $m:ident| $call:expr) => {
        forward!($actor[service], $msg, |$svc, $m| $call);
    };
    ($actor:ty [$field:ident], $msg:ty, |$svc:ident, $m:ident| $call:expr) => {
        impl actix::Handler<$crate::supervisor::Traced<$msg>> for $actor {
            type Result = actix::ResponseFuture<<$msg as actix::Message>::Result>;

            fn handle(
                &mut self,
                traced: $crate::supervisor::Traced<$msg>,
                _: &mut Self::Context,
            ) -> Self::Result {
                let $svc = self.$field.clone();
                let $m = traced.msg;
                Box::pin(::tracing::Instrument::instrument(
                    async move { $call.await },
                    traced.span,
                ))
            }
        }
    };
}

/// Implements the supervisor's `Stop` for an actor that needs nothing but `ctx.stop()`.
macro_rules! stop_on_request {
    ($actor:ty) => {
        impl actix::Handler<$crate::supervisor::Stop> for $actor {
            type Result = ();

            fn handle(&mut self, _: $crate::supervisor::Stop, ctx: &mut Self::Context) {
                actix::ActorContext::stop(ctx);
            }
        }
    };
}

pub mod accounts;
pub mod amount;
pub mod automation;
pub mod clock;
pub mod crypto;
pub mod devpack;
pub mod duration;
pub mod error;
pub mod events;
pub mod executor;
pub mod functions;
pub mod gasbank;
pub mod health;
pub mod ids;
pub mod metrics;
pub mod oracle;
pub mod outbound;
pub mod page;
pub mod patch;
pub mod pricefeeds;
pub mod quota;
pub mod random;
pub mod resolver;
pub mod schedule;
pub mod secrets;
pub mod store;
pub mod stores;
#[cfg(test)]
mod structure_tests;
pub mod supervisor;
pub mod triggers;
pub mod validate;
pub mod work;

pub use clock::{Clock, SystemClock};
pub use error::{StoreError, ValidationError};
pub use ids::AccountId;
