//! The root supervisor. It starts every subsystem actor in order, notices when one stops
//! or crashes, restarts it with back-off (100 ms doubling to 30 s), counts restarts, and
//! publishes each actor's status to [`Health`] for `/readyz`.
//!
//! Crash detection: each child actor owns an [`ExitGuard`]. The guard's `Drop` runs both
//! when the actor stops and when a panic unwinds its task (the runtime catches the panic
//! and drops the actor), so the supervisor hears of every exit without polling.
//!
//! Callers never hold an actor's `Addr` directly: they hold an [`ActorHandle`], which reads
//! the current address from a slot the supervisor refills on restart, and answers
//! [`Unavailable`] while the actor is restarting or failed.

use crate::health::{ActorStatus, Health};
use crate::metrics::ActorMetrics;
use actix::prelude::*;
use futures_util::future::BoxFuture;
use prometheus::IntGauge;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A message together with the caller's tracing span, so work done by the actor is
/// recorded inside the request that caused it.
pub struct Traced<M> {
    pub msg: M,
    pub span: tracing::Span,
    /// Counts the message in `service_layer_actor_mailbox_depth` until the actor takes
    /// it (the handler consumes `Traced`) or the mailbox is dropped with it in.
    queued: Option<InMailbox>,
}

impl<M: Message> Message for Traced<M> {
    type Result = M::Result;
}

/// Asks a supervised actor to stop (orderly shutdown). Every supervised actor handles it
/// with `ctx.stop()`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// The actor cannot take messages now (restarting, failed, or shut down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("actor {0} unavailable")]
pub struct Unavailable(pub &'static str);

/// How the supervisor reacts to exits.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// More restarts than this within `window` mark the actor `failed`.
    pub max_restarts: u32,
    pub window: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl RestartPolicy {
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        Self {
            max_restarts,
            window,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Dropped with the actor that owns it; tells the supervisor that the actor is gone.
pub struct ExitGuard {
    index: usize,
    generation: u64,
    notify: Recipient<ChildExited>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.notify.do_send(ChildExited {
            index: self.index,
            generation: self.generation,
        });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ChildExited {
    index: usize,
    generation: u64,
}

/// Answered once the supervisor has started every child (messages are handled only after
/// `started`), so start-up can wait until the actors accept calls.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WaitStarted;

impl Handler<WaitStarted> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: WaitStarted, _: &mut Self::Context) {}
}

/// Stops every child in reverse start order, then the supervisor itself.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Cheap, cloneable access to a supervised actor.
pub struct ActorHandle<A: Actor> {
    name: &'static str,
    slot: Arc<RwLock<Option<Addr<A>>>>,
    health: Arc<Health>,
    /// `service_layer_actor_mailbox_depth{actor}`.
    mailbox: IntGauge,
}

impl<A: Actor> Clone for ActorHandle<A> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            slot: self.slot.clone(),
            health: self.health.clone(),
            mailbox: self.mailbox.clone(),
        }
    }
}

/// One message in the mailbox gauge, for as long as the message exists undelivered: it
/// travels inside [`Traced`], so a caller that stops waiting does not take it out early,
/// and a message dropped unhandled (actor stopped) still leaves the count.
struct InMailbox(IntGauge);

impl InMailbox {
    fn enter(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InMailbox {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<A: Actor<Context = Context<A>>> ActorHandle<A> {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Sends `msg` within the current span and waits for the reply.
    pub async fn call<M>(&self, msg: M) -> Result<M::Result, Unavailable>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Traced<M>>,
    {
        self.send(msg).await
    }

    /// As [`Self::call`], as a future that does not borrow the handle (the span and the
    /// address are taken now).
    fn send<M>(
        &self,
        msg: M,
    ) -> impl std::future::Future<Output = Result<M::Result, Unavailable>> + Send + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Traced<M>>,
    {
        let name = self.name;
        let addr = if self.health.actor(name) == Some(ActorStatus::Running) {
            self.addr()
        } else {
            None
        };
        let mut traced = Traced {
            msg,
            span: tracing::Span::current(),
            queued: None,
        };
        let mailbox = self.mailbox.clone();
        async move {
            let addr = addr.ok_or(Unavailable(name))?;
            traced.queued = Some(InMailbox::enter(&mailbox));
            addr.send(traced).await.map_err(|_| Unavailable(name))
        }
    }

    /// The current address, if the actor is up (tests and fire-and-forget callers).
    pub fn addr(&self) -> Option<Addr<A>> {
        self.slot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A message whose reply is `Result<Ok, Error>`, where the error can also say that the
/// actor was unavailable: what every subsystem message is.
pub trait Request: Message<Result = Result<Self::Ok, Self::Error>> + Send + 'static {
    type Ok: Send + 'static;
    type Error: From<Unavailable> + Send + 'static;
}

impl<M, T, E> Request for M
where
    M: Message<Result = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<Unavailable> + Send + 'static,
{
    type Ok = T;
    type Error = E;
}

/// A narrow handle: "send this message, get its reply". Callers hold `dyn Ask<M>` (or a
/// subsystem's bundle of them, see [`handle_trait!`](crate::handle_trait)) rather than a
/// concrete actor type, so a test can put anything behind it. An unavailable actor comes
/// back as the message's own error, so callers see one `Result`.
pub trait Ask<M: Request>: Send + Sync {
    fn ask(&self, msg: M) -> BoxFuture<'static, Result<M::Ok, M::Error>>;
}

impl<A, M> Ask<M> for ActorHandle<A>
where
    A: Actor<Context = Context<A>> + Handler<Traced<M>>,
    M: Request,
{
    fn ask(&self, msg: M) -> BoxFuture<'static, Result<M::Ok, M::Error>> {
        let sent = self.send(msg);
        Box::pin(async move { sent.await? })
    }
}

/// Declares a subsystem's handle trait: one `Ask` per message the edge may send, with a
/// blanket impl so an [`ActorHandle`] (or a test double) is one.
#[macro_export]
macro_rules! handle_trait {
    ($(#[$meta:meta])* $name:ident: $($msg:ty),+ $(,)?) => {
        $(#[$meta])*
        pub trait $name: $($crate::supervisor::Ask<$msg> +)+ {}

        impl<T: ?Sized $(+ $crate::supervisor::Ask<$msg>)+> $name for T {}
    };
}

/// What the supervisor needs to (re)start and stop one child, whatever its actor type.
trait Child: Send {
    fn name(&self) -> &'static str;
    fn start(&self, guard: ExitGuard);
    fn stop(&self) -> BoxFuture<'static, ()>;
}

type Factory<A> = Box<dyn Fn(ExitGuard) -> Addr<A> + Send>;

struct ActorChild<A: Actor> {
    name: &'static str,
    slot: Arc<RwLock<Option<Addr<A>>>>,
    factory: Factory<A>,
}

impl<A> Child for ActorChild<A>
where
    A: Actor<Context = Context<A>> + Handler<Stop>,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn start(&self, guard: ExitGuard) {
        let addr = (self.factory)(guard);
        *self.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    fn stop(&self) -> BoxFuture<'static, ()> {
        let addr = self.slot.write().unwrap_or_else(|p| p.into_inner()).take();
        Box::pin(async move {
            if let Some(addr) = addr {
                // An error only means it is already gone.
                let _ = addr.send(Stop).await;
            }
        })
    }
}

struct ChildState {
    child: Box<dyn Child>,
    generation: u64,
    status: ActorStatus,
    backoff: Duration,
    restarts: VecDeque<Instant>,
    running_since: Instant,
}

/// The root supervisor actor. Runs on the system arbiter; children run wherever their
/// factories start them.
pub struct Supervisor {
    children: Vec<ChildState>,
    health: Arc<Health>,
    metrics: ActorMetrics,
    policy: RestartPolicy,
    shutting_down: bool,
}

impl Supervisor {
    pub fn new(health: Arc<Health>, metrics: ActorMetrics, policy: RestartPolicy) -> Self {
        Self {
            children: Vec::new(),
            health,
            metrics,
            policy,
            shutting_down: false,
        }
    }

    /// Registers a child. `factory` must start the actor (on the arbiter chosen for it),
    /// move the guard into it, and return its address. Children start in registration
    /// order when the supervisor starts and stop in reverse order.
    pub fn add<A, F>(&mut self, name: &'static str, factory: F) -> ActorHandle<A>
    where
        A: Actor<Context = Context<A>> + Handler<Stop>,
        F: Fn(ExitGuard) -> Addr<A> + Send + 'static,
    {
        let slot = Arc::new(RwLock::new(None));
        self.children.push(ChildState {
            child: Box::new(ActorChild {
                name,
                slot: slot.clone(),
                factory: Box::new(factory),
            }),
            generation: 0,
            status: ActorStatus::Restarting,
            backoff: self.policy.min_backoff,
            restarts: VecDeque::new(),
            running_since: Instant::now(),
        });
        self.health.set_actor(name, ActorStatus::Restarting);
        // Export the series at 0 from the start, so dashboards see every actor.
        self.metrics.restarts.with_label_values(&[name]).reset();
        self.metrics.up.with_label_values(&[name]).set(0);
        ActorHandle {
            name,
            slot,
            health: self.health.clone(),
            mailbox: self.metrics.mailbox.with_label_values(&[name]),
        }
    }

    fn start_child(&mut self, index: usize, ctx: &mut Context<Self>) {
        let notify = ctx.address().recipient();
        let Some(state) = self.children.get_mut(index) else {
            return;
        };
        state.generation += 1;
        state.child.start(ExitGuard {
            index,
            generation: state.generation,
            notify,
        });
        state.running_since = Instant::now();
        if state.status != ActorStatus::Failed {
            state.status = ActorStatus::Running;
        }
        let name = state.child.name();
        self.health.set_actor(name, state.status);
        self.metrics.up.with_label_values(&[name]).set(1);
    }

    /// A child that has run for a whole window is healthy again: back-off resets and a
    /// `failed` child becomes `running`.
    fn promote_stable_children(&mut self) {
        let window = self.policy.window;
        for state in &mut self.children {
            let stable = state.running_since.elapsed() >= window;
            let alive = matches!(state.status, ActorStatus::Running | ActorStatus::Failed);
            if !(stable && alive) {
                continue;
            }
            state.backoff = self.policy.min_backoff;
            if state.status == ActorStatus::Failed {
                state.status = ActorStatus::Running;
                self.health
                    .set_actor(state.child.name(), ActorStatus::Running);
                tracing::info!(
                    actor = state.child.name(),
                    "actor recovered after a full window of uptime"
                );
            }
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for index in 0..self.children.len() {
            self.start_child(index, ctx);
        }
        let tick =
            (self.policy.window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        ctx.run_interval(tick, |act, _| act.promote_stable_children());
    }
}

impl Handler<ChildExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        if self.shutting_down {
            return;
        }
        let policy = self.policy;
        let Some(state) = self.children.get_mut(msg.index) else {
            return;
        };
        if state.generation != msg.generation {
            return; // an older incarnation's late notice
        }
        let name = state.child.name();
        let now = Instant::now();
        state.restarts.push_back(now);
        while state
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            state.restarts.pop_front();
        }
        let delay = if state.restarts.len() > policy.max_restarts as usize {
            if state.status != ActorStatus::Failed {
                tracing::error!(
                    actor = name,
                    restarts = state.restarts.len(),
                    window_ms = policy.window.as_millis() as u64,
                    "actor failed: too many restarts; readiness is now 503"
                );
            }
            state.status = ActorStatus::Failed;
            policy.max_backoff
        } else {
            state.status = ActorStatus::Restarting;
            state.backoff
        };
        state.backoff = (state.backoff * 2).min(policy.max_backoff);
        tracing::warn!(
            actor = name,
            restart_in_ms = delay.as_millis() as u64,
            "actor exited; restarting"
        );
        self.health.set_actor(name, state.status);
        self.metrics.up.with_label_values(&[name]).set(0);
        let index = msg.index;
        ctx.run_later(delay, move |act, ctx| {
            if act.shutting_down {
                return;
            }
            act.metrics.restarts.with_label_values(&[name]).inc();
            act.start_child(index, ctx);
        });
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let stops: Vec<_> = self
            .children
            .iter()
            .rev()
            .map(|state| (state.child.name(), state.child.stop()))
            .collect();
        let fut = async move {
            for (name, stop) in stops {
                stop.await;
                tracing::debug!(actor = name, "actor stopped");
            }
        };
        Box::pin(fut.into_actor(self).map(|(), act, ctx| {
            for state in &act.children {
                act.metrics
                    .up
                    .with_label_values(&[state.child.name()])
                    .set(0);
            }
            ctx.stop();
        }))
    }
}

#[cfg(test)]
mod tests;
