//! Domain core of service-layer: domain types, actor messages, actors, and the store traits
//! with their memory and PostgreSQL implementations.
//!
//! Architecture invariant: this crate never depends on actix-web. The HTTP edge (the root
//! `service-layer` package) converts requests into the domain types defined here and sends
//! messages to the actors; nothing in here knows about status codes or JSON DTOs.

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
pub mod automation;
pub mod clock;
pub mod crypto;
pub mod duration;
pub mod error;
pub mod events;
pub mod executor;
pub mod functions;
pub mod health;
pub mod ids;
pub mod metrics;
pub mod page;
pub mod patch;
pub mod schedule;
pub mod secrets;
pub mod store;
pub mod supervisor;
pub mod tokens;
pub mod triggers;
pub mod validate;
pub mod work;

pub use clock::{Clock, SystemClock};
pub use error::{StoreError, ValidationError};
pub use ids::AccountId;
