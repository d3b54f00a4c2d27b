//! Price feeds API on both stores: CRUD and validation, snapshots (rounds, latest,
//! newest-first pages, stale), the `pricefeed.updated` event, concurrency, quotas and
//! cascades.

use crate::both_stores;
use crate::helpers::*;
use crate::triggers::executions_until;
use serde_json::{json, Value};

both_stores!(
    feeds_crud_and_validation,
    snapshots_rounds_latest_and_stale,
    a_snapshot_emits_pricefeed_updated,
    concurrent_snapshots_take_every_round_once,
    feeds_obey_the_quota_and_go_with_their_account,
    concurrent_patches_of_different_settings_all_stick,
    an_observation_is_judged_against_the_latest_committed_snapshot,
);

fn feed(base: &str) -> Value {
    json!({"base_asset": base, "quote_asset": "usd", "deviation_percent": 0.5})
}

/// A feed of `asset`/USD under `base`; its id.
async fn new_feed(app: &TestApp, base: &str, asset: &str) -> String {
    let res = app.post(base, &feed(asset)).await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()["id"].as_str().unwrap().to_owned()
}

/// A new account with a NEO/USD feed: (its feeds path, the feed id).
async fn account_with_feed(app: &TestApp) -> (String, String) {
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}/pricefeeds");
    let id = new_feed(app, &base, "neo").await;
    (base, id)
}

async fn items(app: &TestApp, path: &str) -> Vec<Value> {
    let res = app.get(path).await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()["items"].as_array().unwrap().clone()
}

async fn feeds_crud_and_validation(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}/pricefeeds");
    let res = app.post(&base, &feed(" neo ")).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let created = res.json();
    let keys: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "active",
            "base_asset",
            "created_at",
            "deviation_percent",
            "heartbeat_interval",
            "id",
            "latest_at",
            "latest_price",
            "pair",
            "quote_asset",
            "sources",
            "stale",
            "update_interval",
            "updated_at"
        ]
    );
    assert_eq!(
        (
            &created["pair"],
            &created["update_interval"],
            &created["heartbeat_interval"],
            &created["active"],
            &created["sources"],
            &created["latest_price"],
            &created["stale"],
        ),
        (
            &json!("NEO/USD"),
            &json!("@every 1m"),
            &json!("@every 10m"),
            &json!(true),
            &json!([]),
            &Value::Null,
            &json!(true),
        )
    );
    let id = created["id"].as_str().unwrap();
    let path = format!("{base}/{id}");
    assert_eq!(app.get(&path).await.json(), created);

    // The pair is unique per account, whatever the case it was given in.
    app.post(
        &base,
        &json!({"base_asset": "Neo", "quote_asset": "USD", "deviation_percent": 1}),
    )
    .await
    .assert_error(409, "conflict", "price feed NEO/USD already exists");
    // Another account may have the same pair.
    let other = app.create_account_id("bob").await;
    let res = app
        .post(&format!("/accounts/{other}/pricefeeds"), &feed("neo"))
        .await;
    assert_eq!(res.status, 201, "{}", res.text());

    #[rustfmt::skip]
    let bad = [
        (json!({"quote_asset": "USD", "deviation_percent": 1}), "validation_failed", "base_asset: is required"),
        (json!({"base_asset": "NEO/X", "quote_asset": "USD", "deviation_percent": 1}), "validation_failed", "base_asset: must be 1-32 of A-Z, 0-9, '.', '_' or '-'"),
        (json!({"base_asset": "GAS", "quote_asset": "USD"}), "validation_failed", "deviation_percent: is required"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 0}), "validation_failed", "deviation_percent: must be greater than 0 and at most 100"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 101}), "validation_failed", "deviation_percent: must be greater than 0 and at most 100"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 1, "update_interval": "0 * * * *"}), "validation_failed", "update_interval: invalid duration \"0 * * * *\": missing unit (h, m, s or ms)"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 1, "update_interval": "500ms"}), "validation_failed", "update_interval: must be between 1s and 366 days"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 1, "update_interval": "@every 10m", "heartbeat_interval": "1m"}), "validation_failed", "heartbeat_interval: must not be shorter than update_interval"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 1, "sources": ["ftp://prices.example/x"]}), "validation_failed", "sources[0]: must be an http or https URL"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 1, "sources": ["https://a.example/p", "https://a.example/p"]}), "validation_failed", "sources[1]: repeats an earlier source"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 1, "pair": "GAS/USD"}), "invalid_request", "unknown field `pair`, expected one of `base_asset`, `quote_asset`, `update_interval`, `heartbeat_interval`, `deviation_percent`, `active`, `sources`"),
        (json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": "1"}), "invalid_request", "deviation_percent: invalid type: string \"1\", expected f64"),
    ];
    for (body, code, message) in bad {
        app.post(&base, &body)
            .await
            .assert_error(400, code, message);
    }
    let eleven: Vec<String> = (0..11).map(|i| format!("https://p{i}.example/")).collect();
    app.post(&base, &json!({"base_asset": "GAS", "quote_asset": "USD", "deviation_percent": 1, "sources": eleven}))
        .await
        .assert_error(400, "validation_failed", "sources: at most 10 allowed");
    assert_eq!(items(&app, &base).await.len(), 1, "nothing was created");

    // PATCH: settings change; the heartbeat is checked against the result.
    let res = app
        .patch(
            &path,
            &json!({"update_interval": "30s", "heartbeat_interval": "@every 1h", "deviation_percent": 2.5,
                    "sources": ["https://prices.example/v1"], "active": false}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let patched = res.json();
    assert_eq!(
        (
            &patched["update_interval"],
            &patched["heartbeat_interval"],
            &patched["deviation_percent"],
            &patched["sources"],
            &patched["active"],
            &patched["pair"],
        ),
        (
            &json!("@every 30s"),
            &json!("@every 1h"),
            &json!(2.5),
            &json!(["https://prices.example/v1"]),
            &json!(false),
            &json!("NEO/USD"),
        )
    );
    app.patch(&path, &json!({"update_interval": "2h"}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "heartbeat_interval: must not be shorter than update_interval",
        );
    app.patch(&path, &json!({"base_asset": "GAS"}))
        .await
        .assert_error(400, "invalid_request", "unknown field `base_asset`, expected one of `update_interval`, `heartbeat_interval`, `deviation_percent`, `active`, `sources`");
    app.patch(&path, &json!({"active": null}))
        .await
        .assert_error(400, "validation_failed", "active: must not be null");
    assert_eq!(
        app.get(&path).await.json(),
        patched,
        "refused PATCHes change nothing"
    );

    // Pages in creation order.
    app.post(&base, &feed("gas")).await;
    let first = app.get(&format!("{base}?limit=1")).await.json();
    assert_eq!(first["items"][0]["id"], json!(id));
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("{base}?limit=1&cursor={cursor}"))
        .await
        .json();
    assert_eq!(second["items"][0]["pair"], json!("GAS/USD"));
    assert_eq!(second["next_cursor"], Value::Null);

    // Unknown, malformed and other accounts' ids are 404.
    for missing in [
        format!("{base}/{}", uuid::Uuid::new_v4()),
        format!("{base}/not-a-uuid"),
        format!("/accounts/{other}/pricefeeds/{id}"),
    ] {
        app.get(&missing)
            .await
            .assert_error(404, "not_found", "price feed not found");
    }
    assert_eq!(app.delete(&path).await.status, 204);
    app.get(&path)
        .await
        .assert_error(404, "not_found", "price feed not found");
    app.delete(&path)
        .await
        .assert_error(404, "not_found", "price feed not found");
    app.stop().await;
}

async fn snapshots_rounds_latest_and_stale(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, id) = account_with_feed(&app).await;
    let path = format!("{base}/{id}");
    let snapshots = format!("{path}/snapshots");
    assert!(items(&app, &snapshots).await.is_empty());

    let res = app.post(&snapshots, &json!({"price": 12.5})).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let now = res.json();
    assert_eq!(
        (
            &now["round"],
            &now["price"],
            &now["source"],
            &now["feed_id"]
        ),
        (&json!(1), &json!(12.5), &json!("manual"), &json!(id))
    );
    let fed = app.get(&path).await.json();
    assert_eq!(
        (&fed["latest_price"], &fed["latest_at"], &fed["stale"]),
        (&json!(12.5), &now["collected_at"], &json!(false))
    );
    // A backdated snapshot takes the next round but is not the latest.
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let old = app
        .post(
            &snapshots,
            &json!({"price": 11, "source": " exchange-a ", "collected_at": hour_ago}),
        )
        .await
        .json();
    assert_eq!(
        (&old["round"], &old["source"]),
        (&json!(2), &json!("exchange-a"))
    );
    assert_eq!(app.get(&path).await.json()["latest_price"], json!(12.5));
    // Newest first by collected_at, in pages.
    let listed = items(&app, &snapshots).await;
    assert_eq!(listed, [now.clone(), old.clone()]);
    let page = app.get(&format!("{snapshots}?limit=1")).await.json();
    assert_eq!(page["items"], json!([now]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("{snapshots}?limit=1&cursor={cursor}"))
        .await
        .json();
    assert_eq!(
        (&rest["items"], &rest["next_cursor"]),
        (&json!([old]), &Value::Null)
    );

    let ahead = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    #[rustfmt::skip]
    let bad = [
        (json!({}), "validation_failed", "price: is required"),
        (json!({"price": 0}), "validation_failed", "price: must be greater than 0"),
        (json!({"price": -3}), "validation_failed", "price: must be greater than 0"),
        (json!({"price": 1, "collected_at": ahead}), "validation_failed", "collected_at: must not be more than 5 minutes ahead"),
        (json!({"price": 1, "collected_at": "yesterday"}), "validation_failed", "collected_at: not an RFC 3339 time: premature end of input"),
        (json!({"price": 1, "source": "s".repeat(129)}), "validation_failed", "source: must be 0-128 characters"),
        (json!({"price": 1, "source": "desk\u{0}"}), "validation_failed", "source: must not contain NUL characters"),
        (json!({"price": 1, "round": 7}), "invalid_request", "unknown field `round`, expected one of `price`, `source`, `collected_at`"),
    ];
    for (body, code, message) in bad {
        app.post(&snapshots, &body)
            .await
            .assert_error(400, code, message);
    }
    assert_eq!(
        items(&app, &snapshots).await.len(),
        2,
        "nothing was recorded"
    );
    app.post(
        &format!("{base}/{}/snapshots", uuid::Uuid::new_v4()),
        &json!({"price": 1}),
    )
    .await
    .assert_error(404, "not_found", "price feed not found");

    // Stale: nothing within the heartbeat.
    let quick = app
        .post(
            &base,
            &json!({"base_asset": "gas", "quote_asset": "usd", "deviation_percent": 1,
                    "update_interval": "1s", "heartbeat_interval": "2s"}),
        )
        .await
        .json();
    let quick_path = format!("{base}/{}", quick["id"].as_str().unwrap());
    let five_ago = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    app.post(
        &format!("{quick_path}/snapshots"),
        &json!({"price": 3, "collected_at": five_ago}),
    )
    .await;
    let stale = app.get(&quick_path).await.json();
    assert_eq!(
        (&stale["latest_price"], &stale["stale"]),
        (&json!(3.0), &json!(true))
    );

    // Deleting the feed deletes its snapshots.
    assert_eq!(app.delete(&path).await.status, 204);
    app.get(&snapshots)
        .await
        .assert_error(404, "not_found", "price feed not found");
    if let Some(db) = &app.db {
        let client = db.client().await;
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM app_price_feed_snapshots WHERE feed_id = $1",
                &[&uuid::Uuid::parse_str(&id).unwrap()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0);
    }
    app.stop().await;
}

async fn a_snapshot_emits_pricefeed_updated(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("WORK_POLL_INTERVAL", "100ms"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let function = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": "seen", "source": "(params) => params.event"}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post(
            &format!("/accounts/{account}/triggers"),
            &json!({"function_id": function, "type": "event", "rule": "pricefeed.updated"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let base = format!("/accounts/{account}/pricefeeds");
    let id = new_feed(&app, &base, "neo").await;
    let snapshot = app
        .post(
            &format!("{base}/{id}/snapshots"),
            &json!({"price": 7.25, "source": "desk"}),
        )
        .await
        .json();
    // Another account's snapshot never reaches this account's trigger.
    let other = app.create_account_id("bob").await;
    let other_feed = app
        .post(&format!("/accounts/{other}/pricefeeds"), &feed("neo"))
        .await
        .json();
    let res = app
        .post(
            &format!(
                "/accounts/{other}/pricefeeds/{}/snapshots",
                other_feed["id"].as_str().unwrap()
            ),
            &json!({"price": 1}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let runs = executions_until(&app, &account, &function, |e| !e.is_empty()).await;
    let event = &runs[0]["output"];
    assert_eq!(event["name"], json!("pricefeed.updated"));
    assert_eq!(
        event["data"],
        json!({
            "feed_id": id,
            "pair": "NEO/USD",
            "snapshot_id": snapshot["id"],
            "round": 1,
            "price": 7.25,
            "source": "desk",
            "collected_at": snapshot["collected_at"],
        })
    );
    // Exactly one: give the other account's event time to be (not) delivered here.
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        executions_until(&app, &account, &function, |_| true)
            .await
            .len(),
        1
    );
    app.stop().await;
}

async fn concurrent_snapshots_take_every_round_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, id) = account_with_feed(&app).await;
    let snapshots = format!("{base}/{id}/snapshots");
    let posts = (1..=40).map(|i| {
        let (app, snapshots) = (&app, &snapshots);
        async move { app.post(snapshots, &json!({"price": i})).await }
    });
    let results = futures_util::future::join_all(posts).await;
    let mut rounds: Vec<i64> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()["round"].as_i64().unwrap()
        })
        .collect();
    rounds.sort_unstable();
    assert_eq!(rounds, (1..=40).collect::<Vec<_>>());
    assert_eq!(
        items(&app, &format!("{snapshots}?limit=100")).await.len(),
        40
    );
    // The latest is the one collected last (ties: the higher round).
    let latest = app.get(&format!("{base}/{id}")).await.json();
    let newest = &items(&app, &snapshots).await[0];
    assert_eq!(latest["latest_at"], newest["collected_at"]);
    app.stop().await;
}

async fn feeds_obey_the_quota_and_go_with_their_account(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("MAX_FEEDS_PER_ACCOUNT", "2"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}/pricefeeds");
    for asset in ["neo", "gas"] {
        assert_eq!(app.post(&base, &feed(asset)).await.status, 201);
    }
    let res = app.post(&base, &feed("btc")).await;
    assert_eq!(
        (res.status, res.json()["code"].clone()),
        (409, json!("limit_exceeded")),
        "{}",
        res.text()
    );
    // Concurrent creations never pass the quota either.
    let other = app.create_account_id("bob").await;
    let other_base = format!("/accounts/{other}/pricefeeds");
    let creates = ["a", "b", "c", "d", "e", "f"].map(|asset| {
        let (app, other_base) = (&app, &other_base);
        async move { app.post(other_base, &feed(asset)).await.status }
    });
    let statuses = futures_util::future::join_all(creates).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(items(&app, &other_base).await.len(), 2);

    let id = items(&app, &base).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(&format!("{base}/{id}/snapshots"), &json!({"price": 1}))
        .await;
    assert_eq!(
        app.delete(&format!("/accounts/{account}")).await.status,
        204
    );
    if let Some(db) = &app.db {
        let client = db.client().await;
        let count = |sql: &'static str, id: uuid::Uuid| {
            let client = &client;
            async move {
                client
                    .query_one(sql, &[&id])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
            }
        };
        let (account, feed) = (
            uuid::Uuid::parse_str(&account).unwrap(),
            uuid::Uuid::parse_str(&id).unwrap(),
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM app_price_feeds WHERE account_id = $1",
                account
            )
            .await,
            0
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM app_price_feed_snapshots WHERE feed_id = $1",
                feed
            )
            .await,
            0
        );
    }
    // The other account's feeds are untouched.
    assert_eq!(items(&app, &other_base).await.len(), 2);
    app.stop().await;
}

/// `SNAPSHOT_RETENTION`: a replica starting deletes snapshots collected longer ago,
/// except each feed's latest (the memory store's rule is tested beside it).
#[actix_web::test]
async fn old_snapshots_are_purged_but_each_feeds_latest() {
    let db = TestDb::migrated().await;
    let app = spawn_app_with(Backend::Postgres, AppOptions::default().db(db.clone())).await;
    let (base, id) = account_with_feed(&app).await;
    let snapshots = format!("{base}/{id}/snapshots");
    for hours in [5, 4, 3] {
        let at = (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339();
        let res = app
            .post(&snapshots, &json!({"price": hours, "collected_at": at}))
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
    }
    let recent = app.post(&snapshots, &json!({"price": 1})).await.json();
    app.stop().await;
    // Kept for 2 hours: the two oldest go, the 3 h one too, the recent one stays.
    let app = spawn_app_with(
        Backend::Postgres,
        AppOptions::default()
            .db(db.clone())
            .env("SNAPSHOT_RETENTION", "2h"),
    )
    .await;
    let left = items_until(&app, &snapshots, |s| s.len() == 1).await;
    assert_eq!(left[0]["id"], recent["id"]);
    app.stop().await;
    // A feed whose latest is old keeps it.
    let app = spawn_app_with(Backend::Postgres, AppOptions::default().db(db.clone())).await;
    let (base, old_feed) = account_with_feed(&app).await;
    let old = format!("{base}/{old_feed}/snapshots");
    for hours in [9, 8] {
        let at = (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339();
        app.post(&old, &json!({"price": hours, "collected_at": at}))
            .await;
    }
    app.stop().await;
    let app = spawn_app_with(
        Backend::Postgres,
        AppOptions::default().db(db).env("SNAPSHOT_RETENTION", "1h"),
    )
    .await;
    let left = items_until(&app, &old, |s| s.len() == 1).await;
    assert_eq!(left[0]["round"], json!(2), "the latest stays");
    app.stop().await;
}

async fn concurrent_patches_of_different_settings_all_stick(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}/pricefeeds");
    let mut paths = Vec::new();
    for i in 0..10 {
        paths.push(format!(
            "{base}/{}",
            new_feed(&app, &base, &format!("A{i}")).await
        ));
    }
    // Two PATCHes of different settings race on each feed: both must stick (one written
    // from a stale read would undo the other, e.g. re-activate a deactivated feed).
    let deactivate = json!({"active": false});
    let deviate = json!({"deviation_percent": 7.5});
    race_patches(&app, &paths, &deactivate, &deviate).await;
    for path in &paths {
        let now = app.get(path).await.json();
        assert_eq!(
            (&now["active"], &now["deviation_percent"]),
            (&json!(false), &json!(7.5)),
            "{path}"
        );
    }
    app.stop().await;
}

/// The refresher's way of recording, at the store: an observation the feed as taken
/// would not record, but the feed as committed now would (a manual snapshot moved its
/// latest price meanwhile), is recorded; one that neither would record is not.
async fn an_observation_is_judged_against_the_latest_committed_snapshot(backend: Backend) {
    use actors::pricefeeds::observe::worth_recording;
    use actors::pricefeeds::{updated_event, FeedInput, NewFeed, RecordSnapshot, Recorder};
    let (stores, account, now) = stores_with_account(backend).await;
    let feed = NewFeed::parse(FeedInput {
        base_asset: Some("NEO".into()),
        quote_asset: Some("USD".into()),
        deviation_percent: Some(1.0),
        heartbeat_interval: Some("1h".into()),
        ..FeedInput::default()
    })
    .unwrap()
    .into_feed(account.id, now);
    let feeds = stores.feeds.clone();
    feeds
        .create(&feed, actors::quota::Quota::unlimited("t"))
        .await
        .unwrap();
    let snapshot = |price: f64| RecordSnapshot {
        id: actors::ids::SnapshotId::generate(),
        price,
        source: "s".into(),
        collected_at: now,
        created_at: now,
    };
    let manual = |price| {
        feeds.record(
            feed.id,
            Recorder::Api(account.id),
            snapshot(price),
            &|_| true,
            &updated_event,
        )
    };
    manual(100.0).await.unwrap().unwrap();
    // The refresher takes the feed at 100 ...
    let taken = feeds.get(account.id, feed.id).await.unwrap();
    // ... and a manual snapshot moves it to 102 before the observation is recorded.
    manual(102.0).await.unwrap().unwrap();
    let observe = |price: f64| {
        let decide = move |current: &actors::pricefeeds::Feed| worth_recording(current, price, now);
        let by = Recorder::Refresher {
            expected: decide(&taken),
        };
        let feeds = feeds.clone();
        async move {
            feeds
                .record(feed.id, by, snapshot(price), &decide, &updated_event)
                .await
                .unwrap()
        }
    };
    // 100.5: within 1 % of 100 (as taken), 1.5 % from 102 (as committed): recorded.
    let recorded = observe(100.5).await.expect("judged against 102, not 100");
    assert_eq!((recorded.round, recorded.price), (3, 100.5));
    // 100.6: within 1 % of 100.5 and of nothing else: suppressed.
    assert_eq!(observe(100.6).await, None);
    let latest = feeds
        .get(account.id, feed.id)
        .await
        .unwrap()
        .latest
        .unwrap();
    assert_eq!((latest.round, latest.price), (3, 100.5));
}
