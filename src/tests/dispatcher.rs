//! The oracle dispatcher against a real local HTTP server standing in for the resolver:
//! not done then done, a final failure, a resolver down (back-off, then giving up), TTL
//! expiry, a PATCH racing the dispatcher, and two replicas calling the resolver once per
//! attempt (the calls counted at the fake).

use crate::both_stores;
use crate::helpers::*;
use crate::oracle::{listen, request, source};
use crate::triggers::executions_until;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

both_stores!(
    not_done_then_done_succeeds,
    a_resolver_down_backs_off_then_gives_up,
    repeated_not_done_gives_up,
    unanswered_requests_expire,
    a_patch_racing_the_dispatcher_ends_the_request_once,
);

/// What the fake resolver answers and saw.
#[derive(Default)]
pub(crate) struct Resolver {
    /// Call `n` of a request gets `script[min(n, len - 1)]`: (status, body).
    script: Vec<(u16, Value)>,
    /// Per request id: (query, authorization header) of every call.
    calls: HashMap<String, Vec<(String, Option<String>)>>,
    /// While set, answers wait.
    hold: bool,
}

/// A resolver (oracle or gas bank) on a local port: it answers from a script and counts
/// the calls per `request_id` / `transaction_id`.
#[derive(Clone)]
pub(crate) struct Fake {
    port: u16,
    state: Arc<Mutex<Resolver>>,
}

impl Fake {
    pub(crate) async fn start(script: Vec<(u16, Value)>) -> Self {
        let state = Arc::new(Mutex::new(Resolver {
            script,
            ..Resolver::default()
        }));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .route("/resolve", web::get().to(resolve))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        actix_rt::spawn(server.run());
        Self { port, state }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/resolve?tier=gold", self.port)
    }

    pub(crate) fn script(&self, script: Vec<(u16, Value)>) {
        self.state.lock().unwrap().script = script;
    }

    pub(crate) fn hold(&self, hold: bool) {
        self.state.lock().unwrap().hold = hold;
    }

    pub(crate) fn calls(&self, id: &str) -> Vec<(String, Option<String>)> {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
}

async fn resolve(req: HttpRequest, state: web::Data<Arc<Mutex<Resolver>>>) -> HttpResponse {
    let id = req
        .query_string()
        .split('&')
        .find_map(|kv| {
            kv.strip_prefix("request_id=")
                .or_else(|| kv.strip_prefix("transaction_id="))
        })
        .unwrap_or_default()
        .to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let n = {
        let mut state = state.lock().unwrap();
        let calls = state.calls.entry(id).or_default();
        calls.push((req.query_string().to_owned(), auth));
        calls.len() - 1
    };
    while state.lock().unwrap().hold {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = {
        let state = state.lock().unwrap();
        state.script[n.min(state.script.len() - 1)].clone()
    };
    HttpResponse::build(awc::http::StatusCode::from_u16(status).unwrap()).json(body)
}

fn dispatcher(fake: &Fake) -> AppOptions {
    AppOptions::default()
        .env("ORACLE_RESOLVER_URL", &fake.url())
        .env("ORACLE_RESOLVER_KEY", "resolver-key-123")
        .env("ORACLE_POLL_INTERVAL", "100ms")
        .env("WORK_POLL_INTERVAL", "100ms")
}

fn not_done(seconds: u64) -> (u16, Value) {
    (200, json!({"done": false, "retry_after_seconds": seconds}))
}

/// The request at `path`, polled until `done` holds (a hang guard, not a timing
/// assertion).
async fn request_until(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let r = app.get(path).await.json();
        if done(&r) {
            return r;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{path} never reached the expected state: {}",
        app.get(path).await.text()
    );
}

fn is_final(r: &Value) -> bool {
    r["status"] == "succeeded" || r["status"] == "failed"
}

/// `service_layer_oracle_attempts_total{outcome}` from `/metrics`.
async fn attempts(app: &TestApp, outcome: &str) -> u64 {
    let text = app.get("/metrics").await.text();
    let key = format!("service_layer_oracle_attempts_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// An account with a data source: (account, source id).
async fn setup(app: &TestApp) -> (String, String) {
    let account = app.create_account_id("alice").await;
    let id = source(
        app,
        &account,
        json!({"name": "s", "url": "https://s.example"}),
    )
    .await;
    (account, id)
}

fn path(account: &str, request: &Value) -> String {
    format!(
        "/accounts/{account}/oracle/requests/{}",
        request["id"].as_str().unwrap()
    )
}

async fn not_done_then_done_succeeds(backend: Backend) {
    let fake = Fake::start(vec![
        not_done(1),
        (200, json!({"done": true, "success": true, "result": "42"})),
    ])
    .await;
    let app = spawn_app_with(backend, dispatcher(&fake)).await;
    assert_eq!(
        app.get("/readyz").await.json()["checks"]["actors"]["oracle_dispatcher"],
        "running"
    );
    let (account, id) = setup(&app).await;
    let r = request(&app, &account, &id, "q").await;
    let rid = r["id"].as_str().unwrap().to_owned();
    let done = request_until(&app, &path(&account, &r), is_final).await;
    assert_eq!(
        (&done["status"], &done["result"], &done["attempts"]),
        (&json!("succeeded"), &json!("42"), &json!(2))
    );
    assert_eq!(
        (&done["error"], &done["next_attempt_at"]),
        (&Value::Null, &Value::Null)
    );
    let calls = fake.calls(&rid);
    assert_eq!(calls.len(), 2, "one call per attempt");
    assert_eq!(calls[0].0, format!("tier=gold&request_id={rid}"));
    assert_eq!(calls[0].1.as_deref(), Some("Bearer resolver-key-123"));
    assert_eq!(
        (
            attempts(&app, "not_done").await,
            attempts(&app, "succeeded").await
        ),
        (1, 1)
    );
    // Finished by the dispatcher: a PATCH can no longer end it.
    app.patch(&path(&account, &r), &json!({"status": "failed"}))
        .await
        .assert_error(
            409,
            "invalid_state",
            "oracle request is succeeded; it cannot become failed",
        );
    // Text PostgreSQL cannot store is made storable, in both modes.
    fake.script(vec![(
        200,
        json!({"done": true, "success": true, "result": "a\u{0}b"}),
    )]);
    let r = request(&app, &account, &id, "").await;
    let stored = request_until(&app, &path(&account, &r), is_final).await;
    assert_eq!(
        (&stored["status"], &stored["result"]),
        (&json!("succeeded"), &json!("a\u{FFFD}b"))
    );

    // A final failure ends it at once, with the resolver's error (or the default one).
    fake.script(vec![(
        200,
        json!({"done": true, "success": false, "error": "no such pair"}),
    )]);
    let r = request(&app, &account, &id, "").await;
    let failed = request_until(&app, &path(&account, &r), is_final).await;
    assert_eq!(
        (&failed["status"], &failed["error"], &failed["attempts"]),
        (&json!("failed"), &json!("no such pair"), &json!(1))
    );
    fake.script(vec![(200, json!({"done": true, "success": true}))]);
    let r = request(&app, &account, &id, "").await;
    let failed = request_until(&app, &path(&account, &r), is_final).await;
    assert_eq!(
        failed["error"],
        "resolver reported success without a result"
    );
    assert_eq!(attempts(&app, "failed").await, 2);
    app.stop().await;
}

async fn a_resolver_down_backs_off_then_gives_up(backend: Backend) {
    let fake = Fake::start(vec![(503, json!({}))]).await;
    let app = spawn_app_with(backend, dispatcher(&fake).env("ORACLE_MAX_ATTEMPTS", "2")).await;
    let (account, id) = setup(&app).await;
    let r = request(&app, &account, &id, "").await;
    let rid = r["id"].as_str().unwrap().to_owned();
    // After the first transient failure: running, one attempt, the next 5 s later (while
    // the call is under way the next attempt is the lease's end, 30 s on).
    let gap = |r: &Value| {
        let at =
            |field: &str| chrono::DateTime::parse_from_rfc3339(r[field].as_str().unwrap()).unwrap();
        (at("next_attempt_at") - at("updated_at")).num_milliseconds()
    };
    let waiting = request_until(&app, &path(&account, &r), |r| {
        r["attempts"] == 1 && r["next_attempt_at"].is_string() && gap(r) < 10_000
    })
    .await;
    assert_eq!(waiting["status"], "running");
    let backoff = gap(&waiting);
    assert!(
        (4_900..=5_100).contains(&backoff),
        "backed off {backoff} ms"
    );
    let failed = request_until(&app, &path(&account, &r), is_final).await;
    assert_eq!(
        (&failed["status"], &failed["attempts"]),
        (&json!("failed"), &json!(2))
    );
    assert_eq!(
        failed["error"],
        "oracle request gave up after 2 resolver attempts"
    );
    assert_eq!(fake.calls(&rid).len(), 2);
    assert_eq!(
        (
            attempts(&app, "transient").await,
            attempts(&app, "gave_up").await
        ),
        (1, 1)
    );
    app.stop().await;
}

async fn repeated_not_done_gives_up(backend: Backend) {
    let fake = Fake::start(vec![not_done(1)]).await;
    let app = spawn_app_with(backend, dispatcher(&fake).env("ORACLE_MAX_ATTEMPTS", "2")).await;
    let (account, id) = setup(&app).await;
    let r = request(&app, &account, &id, "").await;
    let failed = request_until(&app, &path(&account, &r), is_final).await;
    assert_eq!(
        (&failed["status"], &failed["attempts"]),
        (&json!("failed"), &json!(2))
    );
    assert_eq!(
        failed["error"],
        "oracle request gave up after 2 resolver attempts"
    );
    assert_eq!(fake.calls(r["id"].as_str().unwrap()).len(), 2);
    assert_eq!(
        (
            attempts(&app, "not_done").await,
            attempts(&app, "gave_up").await
        ),
        (1, 1)
    );
    app.stop().await;
}

async fn unanswered_requests_expire(backend: Backend) {
    let fake = Fake::start(vec![not_done(3600)]).await;
    let app = spawn_app_with(backend, dispatcher(&fake).env("ORACLE_TTL", "2s")).await;
    let (account, id) = setup(&app).await;
    let r = request(&app, &account, &id, "").await;
    let rid = r["id"].as_str().unwrap().to_owned();
    let failed = request_until(&app, &path(&account, &r), is_final).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        "oracle request expired after 2s without a final answer"
    );
    // The hour-long wait was cut to the expiry: one call, then the end on time.
    assert_eq!(
        (failed["attempts"].clone(), fake.calls(&rid).len()),
        (json!(1), 1)
    );
    assert_eq!(attempts(&app, "expired").await, 1);
    app.stop().await;
}

async fn a_patch_racing_the_dispatcher_ends_the_request_once(backend: Backend) {
    let fake = Fake::start(vec![(
        200,
        json!({"done": true, "success": true, "result": "late"}),
    )])
    .await;
    fake.hold(true);
    let app = spawn_app_with(backend, dispatcher(&fake)).await;
    let (account, id) = setup(&app).await;
    let mut functions = Vec::new();
    for rule in ["oracle.request.completed", "oracle.request.failed"] {
        functions.push(listen(&app, &account, rule).await);
    }
    let r = request(&app, &account, &id, "").await;
    let rid = r["id"].as_str().unwrap().to_owned();
    // The dispatcher's call is under way (held at the resolver) when the PATCH ends it.
    for _ in 0..400 {
        if !fake.calls(&rid).is_empty() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.calls(&rid).len(), 1);
    let res = app
        .patch(
            &path(&account, &r),
            &json!({"status": "failed", "error": "cancelled"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    fake.hold(false);
    // The resolver's later success changes nothing: failed, one event.
    let failures = executions_until(&app, &account, &functions[1], |e| !e.is_empty()).await;
    assert_eq!(failures[0]["output"]["data"]["error"], "cancelled");
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    let now = app.get(&path(&account, &r)).await.json();
    assert_eq!(
        (&now["status"], &now["error"], &now["result"]),
        (&json!("failed"), &json!("cancelled"), &Value::Null)
    );
    assert!(
        executions_until(&app, &account, &functions[0], |_| true)
            .await
            .is_empty(),
        "no completed event"
    );
    assert_eq!(
        executions_until(&app, &account, &functions[1], |_| true)
            .await
            .len(),
        1
    );
    assert_eq!(
        attempts(&app, "succeeded").await,
        0,
        "the dropped answer is not counted"
    );
    assert_eq!(fake.calls(&rid).len(), 1);
    app.stop().await;
}

#[actix_web::test]
async fn two_replicas_call_the_resolver_once_per_attempt() {
    let fake = Fake::start(vec![
        not_done(1),
        not_done(1),
        (200, json!({"done": true, "success": true, "result": "ok"})),
    ])
    .await;
    let db = TestDb::migrated().await;
    let first = spawn_app_with(Backend::Postgres, dispatcher(&fake).db(db.clone())).await;
    let second = spawn_app_with(Backend::Postgres, dispatcher(&fake).db(db.clone())).await;
    let (account, id) = setup(&first).await;
    let mut requests = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &first } else { &second };
        requests.push(request(app, &account, &id, "").await);
    }
    for r in &requests {
        let done = request_until(&first, &path(&account, r), is_final).await;
        assert_eq!(
            (&done["status"], &done["attempts"]),
            (&json!("succeeded"), &json!(3))
        );
        assert_eq!(
            fake.calls(r["id"].as_str().unwrap()).len(),
            3,
            "one call per attempt"
        );
    }
    first.stop().await;
    second.stop().await;
}

#[actix_web::test]
async fn without_a_resolver_the_dispatcher_is_disabled_and_requests_wait() {
    let app = spawn_app(Backend::Memory).await;
    let actors = app.get("/readyz").await.json()["checks"]["actors"].clone();
    assert_eq!(
        (&actors["oracle"], &actors["oracle_dispatcher"]),
        (&json!("running"), &json!("disabled"))
    );
    let (account, id) = setup(&app).await;
    let r = request(&app, &account, &id, "").await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let now = app.get(&path(&account, &r)).await.json();
    assert_eq!(
        (&now["status"], &now["attempts"]),
        (&json!("pending"), &json!(0))
    );
    app.stop().await;
}
