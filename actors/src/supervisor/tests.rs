use super::*;
use prometheus::Registry;

/// A child that answers `Ping` and panics on `Boom`.
struct Crashy {
    _guard: ExitGuard,
}

impl Actor for Crashy {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u32")]
struct Ping;

#[derive(Message)]
#[rtype(result = "()")]
struct Boom;

impl Handler<Traced<Ping>> for Crashy {
    type Result = u32;
    fn handle(&mut self, _: Traced<Ping>, _: &mut Self::Context) -> u32 {
        7
    }
}

impl Handler<Boom> for Crashy {
    type Result = ();
    fn handle(&mut self, _: Boom, _: &mut Self::Context) {
        panic!("boom (deliberate, from the supervisor test)");
    }
}

impl Handler<Stop> for Crashy {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

fn setup(
    policy: RestartPolicy,
) -> (
    Arc<Health>,
    ActorMetrics,
    ActorHandle<Crashy>,
    Addr<Supervisor>,
) {
    let health = Arc::new(Health::default());
    let metrics = ActorMetrics::register(&Registry::new()).unwrap();
    let mut supervisor = Supervisor::new(health.clone(), metrics.clone(), policy);
    let handle = supervisor.add("crashy", |guard| Crashy { _guard: guard }.start());
    let addr = supervisor.start();
    (health, metrics, handle, addr)
}

async fn wait_for(health: &Health, status: ActorStatus) {
    for _ in 0..200 {
        if health.actor("crashy") == Some(status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "crashy never became {status:?}; it is {:?}",
        health.actor("crashy")
    );
}

fn fast_policy(max_restarts: u32, window: Duration) -> RestartPolicy {
    RestartPolicy {
        max_restarts,
        window,
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(40),
    }
}

#[actix_rt::test]
async fn crashed_actor_is_restarted_and_counted() {
    let (health, metrics, handle, _sup) = setup(fast_policy(5, Duration::from_secs(60)));
    wait_for(&health, ActorStatus::Running).await;
    assert_eq!(handle.call(Ping).await.unwrap(), 7);

    handle.addr().unwrap().do_send(Boom);
    wait_for(&health, ActorStatus::Restarting).await;
    // While restarting, calls are refused rather than queued.
    assert!(handle.call(Ping).await.is_err());

    wait_for(&health, ActorStatus::Running).await;
    assert_eq!(handle.call(Ping).await.unwrap(), 7);
    assert_eq!(metrics.restarts.with_label_values(&["crashy"]).get(), 1);
    assert_eq!(metrics.up.with_label_values(&["crashy"]).get(), 1);
}

#[actix_rt::test]
async fn too_many_restarts_mark_failed_until_a_window_of_uptime() {
    let window = Duration::from_millis(600);
    let (health, metrics, handle, _sup) = setup(fast_policy(1, window));
    wait_for(&health, ActorStatus::Running).await;
    for _ in 0..2 {
        handle.addr().unwrap().do_send(Boom);
        // Wait for the new incarnation before crashing it again.
        let before = metrics.restarts.with_label_values(&["crashy"]).get();
        for _ in 0..200 {
            if metrics.restarts.with_label_values(&["crashy"]).get() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_for(&health, ActorStatus::Failed).await;
    // Still restarted (at maximum back-off), but refused until it has been up a window.
    assert!(handle.call(Ping).await.is_err());
    wait_for(&health, ActorStatus::Running).await;
    assert_eq!(handle.call(Ping).await.unwrap(), 7);
}

#[actix_rt::test]
async fn shutdown_stops_children_without_restarting_them() {
    let (health, metrics, handle, sup) = setup(fast_policy(5, Duration::from_secs(60)));
    wait_for(&health, ActorStatus::Running).await;
    sup.send(Shutdown).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(handle.addr().is_none());
    assert_eq!(metrics.restarts.with_label_values(&["crashy"]).get(), 0);
    assert_eq!(metrics.up.with_label_values(&["crashy"]).get(), 0);
}

/// Answered when the test releases it, and the actor handles nothing else meanwhile
/// (an atomic response), so later messages wait in its mailbox.
#[derive(Message)]
#[rtype(result = "()")]
struct Hold(tokio::sync::oneshot::Receiver<()>);

impl Handler<Traced<Hold>> for Crashy {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, held: Traced<Hold>, _: &mut Self::Context) -> Self::Result {
        let released = held.msg.0;
        AtomicResponse::new(Box::pin(
            async move {
                let _ = released.await;
            }
            .into_actor(self),
        ))
    }
}

async fn wait_for_depth(metrics: &ActorMetrics, depth: i64) {
    let gauge = metrics.mailbox.with_label_values(&["crashy"]);
    for _ in 0..200 {
        if gauge.get() == depth {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("mailbox depth stayed {}, expected {depth}", gauge.get());
}

/// Sends `Hold` through the handle on its own task; the sender releases it.
fn hold(
    handle: &ActorHandle<Crashy>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    actix_rt::task::JoinHandle<Result<(), Unavailable>>,
) {
    let (release, held) = tokio::sync::oneshot::channel();
    let handle = handle.clone();
    (
        release,
        actix_rt::spawn(async move { handle.call(Hold(held)).await }),
    )
}

#[actix_rt::test]
async fn mailbox_depth_counts_messages_waiting_for_the_actor() {
    let (health, metrics, handle, _sup) = setup(fast_policy(3, Duration::from_secs(10)));
    wait_for(&health, ActorStatus::Running).await;
    assert_eq!(metrics.mailbox.with_label_values(&["crashy"]).get(), 0);

    // The actor busy with the first message; two more wait: depth 2, then each leaves the
    // count when the actor takes it.
    let (release_a, a) = hold(&handle);
    wait_for_depth(&metrics, 0).await;
    let (release_b, b) = hold(&handle);
    let (release_c, c) = hold(&handle);
    wait_for_depth(&metrics, 2).await;
    release_a.send(()).unwrap();
    a.await.unwrap().unwrap();
    wait_for_depth(&metrics, 1).await;
    release_b.send(()).unwrap();
    b.await.unwrap().unwrap();
    wait_for_depth(&metrics, 0).await;

    // A caller that gives up (its future dropped) leaves its message in the mailbox: it
    // counts until the actor takes it.
    let (release_d, abandoned) = hold(&handle);
    wait_for_depth(&metrics, 1).await;
    abandoned.abort();
    let _ = abandoned.await;
    assert_eq!(metrics.mailbox.with_label_values(&["crashy"]).get(), 1);
    release_c.send(()).unwrap();
    c.await.unwrap().unwrap();
    wait_for_depth(&metrics, 0).await;
    drop(release_d);
}
