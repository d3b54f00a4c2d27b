//! The price feed refresher against real local HTTP servers standing in for price
//! sources: deviation and heartbeat, the median with a failing and a slow source, the
//! default source and its key, private sources refused unless allowed, and two replicas
//! polling each feed once per interval.

use crate::both_stores;
use crate::helpers::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

both_stores!(
    snapshots_follow_deviation_and_heartbeat,
    the_median_skips_a_failing_and_a_slow_source,
    the_default_source_alone_gets_the_key,
    private_sources_are_refused_unless_allowed,
);

/// What the fake sources know and saw.
#[derive(Default)]
struct Sources {
    prices: HashMap<String, f64>,
    /// Per source name: (query, authorization header) of every call.
    calls: HashMap<String, Vec<(String, Option<String>)>>,
}

#[derive(Clone)]
struct Fake {
    port: u16,
    state: Arc<Mutex<Sources>>,
}

impl Fake {
    async fn start() -> Self {
        let state = Arc::new(Mutex::new(Sources::default()));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            let state = shared.clone();
            App::new()
                .app_data(web::Data::new(state))
                .route("/price/{name}", web::get().to(price))
                .route(
                    "/fail",
                    web::get().to(|| async { HttpResponse::InternalServerError().finish() }),
                )
                .route(
                    "/slow",
                    web::get().to(|| async {
                        actix_rt::time::sleep(Duration::from_secs(5)).await;
                        HttpResponse::Ok().json(json!({"price": 1000}))
                    }),
                )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        actix_rt::spawn(server.run());
        Self { port, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn set(&self, name: &str, price: f64) {
        self.state
            .lock()
            .unwrap()
            .prices
            .insert(name.to_owned(), price);
    }

    fn calls(&self, name: &str) -> Vec<(String, Option<String>)> {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

async fn price(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<Arc<Mutex<Sources>>>,
) -> HttpResponse {
    let mut state = state.lock().unwrap();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .calls
        .entry(name.to_string())
        .or_default()
        .push((req.query_string().to_owned(), auth));
    match state.prices.get(name.as_str()) {
        Some(p) => HttpResponse::Ok().json(json!({"price": p, "source": name.as_str()})),
        None => HttpResponse::NotFound().finish(),
    }
}

fn refresher() -> AppOptions {
    AppOptions::default()
        .env("PRICEFEED_TICK", "100ms")
        .env("PRICEFEED_FETCH_TIMEOUT", "500ms")
        .env("PRICEFEED_ALLOW_PRIVATE_SOURCES", "true")
}

/// Creates a feed; its path.
async fn feed(app: &TestApp, account: &str, body: Value) -> String {
    let base = format!("/accounts/{account}/pricefeeds");
    let res = app.post(&base, &body).await;
    assert_eq!(res.status, 201, "{}", res.text());
    format!("{base}/{}", res.json()["id"].as_str().unwrap())
}

/// The feed's snapshots (newest first), polled until `done` holds (a hang guard, not a
/// timing assertion).
async fn snapshots_until(app: &TestApp, feed: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    items_until(app, &format!("{feed}/snapshots?limit=500"), done).await
}

async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// `service_layer_pricefeed_observations_total{outcome}` from `/metrics`.
async fn observations(app: &TestApp, outcome: &str) -> u64 {
    let text = app.get("/metrics").await.text();
    let key = format!("service_layer_pricefeed_observations_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn snapshots_follow_deviation_and_heartbeat(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn_app_with(backend, refresher()).await;
    let account = app.create_account_id("alice").await;
    fake.set("a", 100.0);
    let path = feed(
        &app,
        &account,
        json!({"base_asset": "NEO", "quote_asset": "USD",
        "deviation_percent": 10, "update_interval": "1s", "heartbeat_interval": "1h",
        "sources": [fake.url("/price/a")]}),
    )
    .await;
    let first = snapshots_until(&app, &path, |s| !s.is_empty()).await;
    assert_eq!(
        (&first[0]["round"], &first[0]["price"], &first[0]["source"]),
        (&json!(1), &json!(100.0), &json!("a"))
    );
    assert_eq!(fake.calls("a")[0].0, "base=NEO&quote=USD");
    // Below the deviation: observed, not recorded.
    fake.set("a", 105.0);
    let seen = fake.calls("a").len();
    until("two more polls", || fake.calls("a").len() >= seen + 2).await;
    assert_eq!(snapshots_until(&app, &path, |_| true).await.len(), 1);
    assert!(observations(&app, "suppressed").await >= 1);
    // At the deviation: recorded.
    fake.set("a", 110.0);
    let both = snapshots_until(&app, &path, |s| s.len() == 2).await;
    assert_eq!(
        (&both[0]["round"], &both[0]["price"]),
        (&json!(2), &json!(110.0))
    );
    assert_eq!(app.get(&path).await.json()["latest_price"], json!(110.0));

    // The heartbeat forces a snapshot of an unchanged price.
    fake.set("b", 7.0);
    let beat = feed(
        &app,
        &account,
        json!({"base_asset": "GAS", "quote_asset": "USD",
        "deviation_percent": 50, "update_interval": "1s", "heartbeat_interval": "2s",
        "sources": [fake.url("/price/b")]}),
    )
    .await;
    let beats = snapshots_until(&app, &beat, |s| s.len() >= 2).await;
    assert!(beats.iter().all(|s| s["price"] == json!(7.0)));
    assert!(observations(&app, "recorded").await >= 4);
    // Deactivated: no more polls.
    app.patch(&beat, &json!({"active": false})).await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let settled = fake.calls("b").len();
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.calls("b").len(),
        settled,
        "an inactive feed is not polled"
    );
    app.stop().await;
}

async fn the_median_skips_a_failing_and_a_slow_source(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn_app_with(backend, refresher()).await;
    let account = app.create_account_id("alice").await;
    fake.set("a", 10.0);
    fake.set("b", 20.0);
    let path = feed(&app, &account, json!({"base_asset": "NEO", "quote_asset": "USD",
        "deviation_percent": 1, "update_interval": "1m",
        "sources": [fake.url("/price/a"), fake.url("/fail"), fake.url("/price/b"), fake.url("/slow")]})).await;
    let first = snapshots_until(&app, &path, |s| !s.is_empty()).await;
    assert_eq!(
        (&first[0]["price"], &first[0]["source"]),
        (&json!(15.0), &json!("median:2"))
    );
    // With every source failing, the observation is an error and nothing is recorded.
    let dead = feed(
        &app,
        &account,
        json!({"base_asset": "GAS", "quote_asset": "USD",
        "deviation_percent": 1, "update_interval": "1m", "sources": [fake.url("/fail")]}),
    )
    .await;
    let errors = || observations(&app, "error");
    for _ in 0..200 {
        if errors().await >= 1 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors().await >= 1);
    assert!(snapshots_until(&app, &dead, |_| true).await.is_empty());
    app.stop().await;
}

async fn the_default_source_alone_gets_the_key(backend: Backend) {
    let fake = Fake::start().await;
    let app = spawn_app_with(
        backend,
        refresher()
            .env("PRICEFEED_FETCH_URL", &fake.url("/price/d?tier=1"))
            .env("PRICEFEED_FETCH_KEY", "source-key-123"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    fake.set("d", 3.0);
    fake.set("a", 4.0);
    let default = feed(
        &app,
        &account,
        json!({"base_asset": "NEO", "quote_asset": "USD", "deviation_percent": 1}),
    )
    .await;
    let own = feed(
        &app,
        &account,
        json!({"base_asset": "GAS", "quote_asset": "EUR", "deviation_percent": 1,
        "sources": [fake.url("/price/a")]}),
    )
    .await;
    snapshots_until(&app, &default, |s| !s.is_empty()).await;
    snapshots_until(&app, &own, |s| !s.is_empty()).await;
    let (query, auth) = fake.calls("d")[0].clone();
    assert_eq!(
        (query.as_str(), auth.as_deref()),
        ("tier=1&base=NEO&quote=USD", Some("Bearer source-key-123"))
    );
    let (query, auth) = fake.calls("a")[0].clone();
    assert_eq!(
        (query.as_str(), auth),
        ("base=GAS&quote=EUR", None),
        "the key goes to its own URL only"
    );
    app.stop().await;
}

async fn private_sources_are_refused_unless_allowed(backend: Backend) {
    let fake = Fake::start().await;
    // The operator's default source may be private; tenants' sources may not.
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("PRICEFEED_TICK", "100ms")
            .env("PRICEFEED_FETCH_URL", &fake.url("/price/d")),
    )
    .await;
    let account = app.create_account_id("alice").await;
    fake.set("a", 1.0);
    fake.set("d", 2.0);
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
        let url = format!("http://{host}:{}/price/a", fake.port);
        let base: String = host.chars().filter(char::is_ascii_alphanumeric).collect();
        feed(
            &app,
            &account,
            json!({"base_asset": base, "quote_asset": "USD",
            "deviation_percent": 1, "sources": [url]}),
        )
        .await;
    }
    let default = feed(
        &app,
        &account,
        json!({"base_asset": "NEO", "quote_asset": "USD", "deviation_percent": 1}),
    )
    .await;
    let first = snapshots_until(&app, &default, |s| !s.is_empty()).await;
    assert_eq!(
        first[0]["price"],
        json!(2.0),
        "the default source is the operator's"
    );
    for _ in 0..200 {
        if observations(&app, "error").await >= 3 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(observations(&app, "error").await >= 3);
    assert!(
        fake.calls("a").is_empty(),
        "no request reached the private source"
    );
    app.stop().await;
}

#[actix_web::test]
async fn two_replicas_poll_each_feed_once_per_interval() {
    let fake = Fake::start().await;
    let db = TestDb::migrated().await;
    let first = spawn_app_with(Backend::Postgres, refresher().db(db.clone())).await;
    let second = spawn_app_with(Backend::Postgres, refresher().db(db.clone())).await;
    let account = first.create_account_id("alice").await;
    fake.set("a", 5.0);
    feed(
        &first,
        &account,
        json!({"base_asset": "NEO", "quote_asset": "USD",
        "deviation_percent": 50, "update_interval": "1s", "heartbeat_interval": "1h",
        "sources": [fake.url("/price/a")]}),
    )
    .await;
    until("the first poll", || !fake.calls("a").is_empty()).await;
    let started = std::time::Instant::now();
    let before = fake.calls("a").len();
    actix_rt::time::sleep(Duration::from_secs(4)).await;
    let polls = fake.calls("a").len() - before;
    let seconds = started.elapsed().as_secs_f64();
    // One poll per interval between them: at most one per elapsed second (plus the one
    // under way); two replicas polling independently would make about twice as many.
    assert!(
        polls as f64 <= seconds + 1.0,
        "{polls} polls in {seconds:.1} s"
    );
    assert!(polls >= 2, "the feed kept being polled: {polls}");
    first.stop().await;
    second.stop().await;
}
