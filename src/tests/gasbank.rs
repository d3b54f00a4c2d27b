//! The gas bank: gas accounts, exact amounts, deposits credited once per `tx_id`,
//! withdrawals that never overspend under concurrency, the settler against a local fake
//! resolver (done, down, TTL, two replicas), settlement exactly once at store level, and
//! Devpack actions all-or-nothing.

use crate::both_stores;
use crate::dispatcher::Fake;
use crate::helpers::*;
use crate::oracle::listen;
use crate::triggers::executions_until;
use serde_json::{json, Value};
use std::time::Duration;

both_stores!(
    gas_accounts_are_one_per_owner_with_unique_wallets,
    deposits_credit_once_per_tx_id,
    amounts_are_exact_and_validated,
    concurrent_withdrawals_never_overspend,
    a_replayed_deposit_credits_once_under_concurrency,
    a_pending_withdrawal_keeps_its_account,
    the_settler_pays_out_once_and_emits_one_event,
    a_resolver_down_fails_the_withdrawal_and_releases_the_funds,
    unsettled_withdrawals_expire,
    a_withdrawal_settles_once_at_store_level,
    devpack_gas_actions_are_all_or_nothing,
);

fn base(account: &str) -> String {
    format!("/accounts/{account}/gasbank")
}

/// An account with a gas account holding `amount` GAS: (account, gas account id).
async fn funded(app: &TestApp, amount: &str) -> (String, String) {
    let account = app.create_account_id("alice").await;
    let gas = app.post(&base(&account), &json!({})).await.json();
    let id = gas["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &format!("{}/deposit", base(&account)),
            &json!({"gas_account_id": id, "amount": amount, "tx_id": format!("seed-{id}")}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    (account, id)
}

async fn gas_account(app: &TestApp, account: &str) -> Value {
    app.get(&base(account)).await.json()["items"][0].clone()
}

fn balances(g: &Value) -> (String, String, String) {
    let s = |k: &str| g[k].as_str().unwrap().to_owned();
    (s("balance"), s("available"), s("pending"))
}

async fn gas_accounts_are_one_per_owner_with_unique_wallets(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.create_account_id("alice").await;
    let bob = app.create_account_id("bob").await;
    let empty = app.get(&base(&alice)).await.json();
    assert_eq!(empty, json!({"items": [], "next_cursor": null}));

    let created = app
        .post(&base(&alice), &json!({"wallet_address": " NQk9AbC "}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let g = created.json();
    assert_eq!(g["wallet_address"], "NQk9AbC", "trimmed, case kept");
    assert_eq!(balances(&g), ("0".into(), "0".into(), "0".into()));
    assert_eq!(g["account_id"], json!(alice));
    // Again: the same account, 200; an empty wallet changes nothing; a new one replaces.
    let again = app.post(&base(&alice), &json!({})).await;
    assert_eq!((again.status, &again.json()["id"]), (200, &g["id"]));
    assert_eq!(again.json()["wallet_address"], "NQk9AbC");
    let moved = app
        .post(&base(&alice), &json!({"wallet_address": "NZz1"}))
        .await;
    assert_eq!(
        (moved.status, &moved.json()["wallet_address"]),
        (200, &json!("NZz1"))
    );
    // Bob cannot take Alice's wallet in any case; the freed one is his to take.
    app.post(&base(&bob), &json!({"wallet_address": "nzZ1"}))
        .await
        .assert_error(
            409,
            "conflict",
            "wallet_address is already used by another gas account",
        );
    assert_eq!(
        app.get(&base(&bob)).await.json()["items"],
        json!([]),
        "a refused create stores nothing"
    );
    let b = app
        .post(&base(&bob), &json!({"wallet_address": "NQK9ABC"}))
        .await;
    assert_eq!(b.status, 201, "{}", b.text());
    for (body, message) in [
        (
            json!({"wallet_address": "Nä"}),
            "wallet_address: must be printable ASCII",
        ),
        (
            json!({"wallet_address": "N a"}),
            "wallet_address: must not contain whitespace",
        ),
        (
            json!({"wallet_address": "x".repeat(129)}),
            "wallet_address: must be 0-128 characters",
        ),
    ] {
        app.post(&base(&alice), &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    app.post(&base(&alice), &json!({"wallet": "x"}))
        .await
        .assert_error(
            400,
            "invalid_request",
            "unknown field `wallet`, expected `wallet_address`",
        );
    // One account by id; another owner's id, or a malformed one, is 404.
    let one = app
        .get(&format!(
            "{}?gas_account_id={}",
            base(&alice),
            g["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!((one.status, &one.json()["id"]), (200, &g["id"]));
    for id in [b.json()["id"].as_str().unwrap(), "nope"] {
        app.get(&format!("{}?gas_account_id={id}", base(&alice)))
            .await
            .assert_error(404, "not_found", "gas account not found");
    }
    let unknown = "00000000-0000-4000-8000-000000000000";
    app.get(&base(unknown))
        .await
        .assert_error(404, "not_found", "account not found");
    app.post(&base(unknown), &json!({}))
        .await
        .assert_error(404, "not_found", "account not found");
    app.stop().await;
}

async fn deposits_credit_once_per_tx_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let (account, id) = funded(&app, "10").await;
    let deposit = format!("{}/deposit", base(&account));
    let body = json!({"gas_account_id": id, "amount": "2.5", "tx_id": "0xABC",
                      "from_address": "NFrom", "to_address": "NTo"});
    let first = app.post(&deposit, &body).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let first = first.json();
    let t = &first["transaction"];
    assert_eq!(
        (
            &t["type"],
            &t["status"],
            &t["amount"],
            &t["net_amount"],
            &t["blockchain_tx_id"]
        ),
        (
            &json!("deposit"),
            &json!("completed"),
            &json!("2.5"),
            &json!("2.5"),
            &json!("0xABC")
        )
    );
    assert_eq!(
        (&t["from_address"], &t["to_address"]),
        (&json!("NFrom"), &json!("NTo"))
    );
    assert!(t["completed_at"].is_string() && t["next_attempt_at"].is_null());
    assert_eq!(
        balances(&first["account"]),
        ("12.5".into(), "12.5".into(), "0".into())
    );
    // Replayed, in another case, as a number: 200 with the original, nothing credited.
    let replay = app
        .post(
            &deposit,
            &json!({"gas_account_id": id, "amount": 2.5, "tx_id": "0xabc"}),
        )
        .await;
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(replay.json()["transaction"], first["transaction"]);
    assert_eq!(balances(&replay.json()["account"]).0, "12.5");
    // Another amount, or another gas account, under the same tx_id: 409.
    app.post(&deposit, &json!({"amount": "3", "tx_id": "0xAbC"}))
        .await
        .assert_error(
            409,
            "conflict",
            "tx_id \"0xAbC\" was already used for a deposit of another amount or gas account",
        );
    let bob = app.create_account_id("bob").await;
    app.post(&base(&bob), &json!({})).await;
    app.post(
        &format!("{}/deposit", base(&bob)),
        &json!({"amount": "2.5", "tx_id": "0xABC"}),
    )
    .await
    .assert_error(
        409,
        "conflict",
        "tx_id \"0xABC\" was already used for a deposit of another amount or gas account",
    );
    assert_eq!(balances(&gas_account(&app, &account).await).0, "12.5");
    // Body ids name the account's own gas account, else 400; no gas account yet, 400.
    let other = gas_account(&app, &bob).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &deposit,
        &json!({"gas_account_id": other, "amount": "1", "tx_id": "t2"}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "gas_account_id: no gas account with this id in this account",
    );
    let carol = app.create_account_id("carol").await;
    app.post(&format!("{}/deposit", base(&carol)), &json!({"amount": "1", "tx_id": "t3"}))
        .await
        .assert_error(400, "validation_failed", "gas_account_id: this account has no gas account yet (POST /accounts/{id}/gasbank creates it)");
    app.post(
        "/accounts/00000000-0000-4000-8000-000000000000/gasbank/deposit",
        &json!({"amount": "1", "tx_id": "t4"}),
    )
    .await
    .assert_error(404, "not_found", "account not found");
    for (body, message) in [
        (json!({"amount": "1"}), "tx_id: is required"),
        (json!({"amount": "1", "tx_id": "  "}), "tx_id: is required"),
        (
            json!({"amount": "1", "tx_id": "x".repeat(129)}),
            "tx_id: must be 1-128 characters",
        ),
        (json!({"tx_id": "t5"}), "amount: is required"),
    ] {
        app.post(&deposit, &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    // The ledger, newest first: the replay added nothing.
    let ledger = app
        .get(&format!("{}/transactions", base(&account)))
        .await
        .json();
    let items = ledger["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], first["transaction"]["id"]);
    assert_eq!(items[1]["blockchain_tx_id"], format!("seed-{id}"));
    let page = app
        .get(&format!("{}/transactions?limit=1", base(&account)))
        .await
        .json();
    let next = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!(
            "{}/transactions?limit=1&cursor={next}",
            base(&account)
        ))
        .await
        .json();
    assert_eq!(rest["items"][0]["id"], items[1]["id"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    app.get(&format!(
        "{}/transactions?gas_account_id={other}",
        base(&account)
    ))
    .await
    .assert_error(404, "not_found", "gas account not found");
    app.stop().await;
}

async fn amounts_are_exact_and_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let (account, _) = funded(&app, "0.1").await;
    let deposit = format!("{}/deposit", base(&account));
    // 0.1 + 0.2 is 0.3 exactly; 8 decimals and the largest sum survive as written.
    let r = app
        .post(&deposit, &json!({"amount": 0.2, "tx_id": "a"}))
        .await
        .json();
    assert_eq!(r["account"]["available"], "0.3");
    let r = app
        .post(&deposit, &json!({"amount": "0.00000001", "tx_id": "b"}))
        .await
        .json();
    assert_eq!(r["account"]["available"], "0.30000001");
    let r = app
        .post(
            &deposit,
            &json!({"amount": 92_233_720_368_u64, "tx_id": "c"}),
        )
        .await
        .json();
    assert_eq!(r["account"]["balance"], "92233720368.30000001");
    // Past the largest balance: refused, nothing credited.
    app.post(&deposit, &json!({"amount": "1", "tx_id": "d"}))
        .await
        .assert_error(
            409,
            "invalid_state",
            "the deposit would take the balance past 92233720368.54775807 GAS",
        );
    assert_eq!(
        gas_account(&app, &account).await["balance"],
        "92233720368.30000001"
    );
    let malformed = "amount: must be a decimal number of GAS such as \"6.5\" (digits, at most one '.', no sign, exponent or spaces)";
    // Sent as raw JSON text: the amount is read from exactly these characters.
    let not_decimal = "amount: must be a decimal string such as \"6.5\" or a number";
    for (amount, message) in [
        ("\"0\"", "amount: must be greater than 0"),
        ("0", "amount: must be greater than 0"),
        ("0.0", "amount: must be greater than 0"),
        ("\"-1\"", malformed),
        ("-1", malformed),
        ("1e3", malformed),
        ("1E-3", malformed),
        ("\"1e3\"", malformed),
        ("\" 1\"", malformed),
        ("\"01\"", malformed),
        ("\"1.\"", malformed),
        ("\".5\"", malformed),
        ("1.000000001", "amount: at most 8 fractional digits"),
        (
            "\"92233720368.54775808\"",
            "amount: must be at most 92233720368.54775807",
        ),
        ("true", not_decimal),
        ("[1]", not_decimal),
        ("null", "amount: is required"),
    ] {
        let body = format!(r#"{{"amount": {amount}, "tx_id": "z"}}"#);
        let res = read(
            app.req(awc::http::Method::POST, &deposit)
                .insert_header(("content-type", "application/json"))
                .send_body(body)
                .await
                .unwrap(),
        )
        .await;
        res.assert_error(400, "validation_failed", message);
    }
    app.stop().await;
}

/// Posts `n` withdrawals of `amount` at once; the statuses.
async fn withdraw_all(app: &TestApp, account: &str, n: usize, amount: &str) -> Vec<u16> {
    let path = format!("{}/withdraw", base(account));
    let body = json!({"amount": amount, "to_address": "NDest"});
    let sends = (0..n).map(|_| app.post(&path, &body));
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect()
}

async fn concurrent_withdrawals_never_overspend(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("MAX_PENDING_WITHDRAWALS_PER_ACCOUNT", "0"),
    )
    .await;
    let (account, _) = funded(&app, "50").await;
    // A reader samples the balances while the withdrawals race.
    let sampler = {
        let (app, path) = (Api::new(app.base.clone()), base(&account));
        actix_rt::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..40 {
                seen.push(balances(&app.get(&path).await.json()["items"][0]));
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    let statuses = withdraw_all(&app, &account, 200, "1").await;
    let ok = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 422).count();
    assert_eq!((ok, refused), (50, 150), "{statuses:?}");
    for (balance, available, pending) in sampler.await.unwrap() {
        let (b, a, p): (f64, f64, f64) = (
            balance.parse().unwrap(),
            available.parse().unwrap(),
            pending.parse().unwrap(),
        );
        assert!(
            a >= 0.0 && p >= 0.0 && b == 50.0 && a + p == 50.0,
            "{balance} {available} {pending}"
        );
    }
    let g = gas_account(&app, &account).await;
    assert_eq!(balances(&g), ("50".into(), "0".into(), "50".into()));
    let ledger = items_until(
        &app,
        &format!("{}/transactions?limit=500", base(&account)),
        |_| true,
    )
    .await;
    let pending = ledger
        .iter()
        .filter(|t| t["type"] == "withdrawal" && t["status"] == "pending")
        .count();
    assert_eq!(pending, 50, "one pending row per accepted withdrawal");
    // PostgreSQL itself refuses a negative or inconsistent balance, whatever the code.
    if let Some(db) = &app.db {
        let client = db.client().await;
        for change in [
            "available = available - 1",
            "pending = pending + 1",
            "available = -1, balance = balance - available - 1",
        ] {
            let refused = client
                .execute(&format!("UPDATE app_gas_accounts SET {change}"), &[])
                .await
                .unwrap_err();
            assert_eq!(
                refused.code(),
                Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
                "{change}"
            );
        }
    }
    app.post(
        &format!("{}/withdraw", base(&account)),
        &json!({"amount": "0.00000001", "to_address": "N"}),
    )
    .await
    .assert_error(
        422,
        "insufficient_funds",
        "insufficient funds: available 0, requested 0.00000001",
    );
    app.stop().await;
}

async fn a_replayed_deposit_credits_once_under_concurrency(backend: Backend) {
    let app = spawn_app(backend).await;
    let (account, _) = funded(&app, "1").await;
    let path = format!("{}/deposit", base(&account));
    let body = json!({"amount": "7", "tx_id": "0xfeed"});
    let sends = (0..20).map(|_| app.post(&path, &body));
    let answers = futures_util::future::join_all(sends).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    let replayed = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!((created, replayed), (1, 19));
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|r| r.json()["transaction"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the one deposit");
    assert_eq!(balances(&gas_account(&app, &account).await).0, "8");
    app.stop().await;
}

async fn a_pending_withdrawal_keeps_its_account(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("MAX_PENDING_WITHDRAWALS_PER_ACCOUNT", "2"),
    )
    .await;
    let (account, _) = funded(&app, "5").await;
    assert_eq!(
        withdraw_all(&app, &account, 3, "1")
            .await
            .iter()
            .filter(|s| **s == 201)
            .count(),
        2
    );
    app.post(
        &format!("{}/withdraw", base(&account)),
        &json!({"amount": "1", "to_address": "N"}),
    )
    .await
    .assert_error(
        409,
        "limit_exceeded",
        "pending withdrawals: at most 2 per account (MAX_PENDING_WITHDRAWALS_PER_ACCOUNT)",
    );
    app.delete(&format!("/accounts/{account}"))
        .await
        .assert_error(
            409,
            "invalid_state",
            "the account has a pending withdrawal; delete it once the withdrawal is settled",
        );
    assert_eq!(app.get(&format!("/accounts/{account}")).await.status, 200);
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("5".into(), "3".into(), "2".into())
    );
    // Without a pending withdrawal the account goes with its gas account and ledger.
    let (other, _) = funded(&app, "1").await;
    assert_eq!(app.delete(&format!("/accounts/{other}")).await.status, 204);
    app.stop().await;
}

fn settler(fake: &Fake) -> AppOptions {
    AppOptions::default()
        .env("GASBANK_RESOLVER_URL", &fake.url())
        .env("GASBANK_RESOLVER_KEY", "gas-key-123")
        .env("GASBANK_POLL_INTERVAL", "100ms")
        .env("WORK_POLL_INTERVAL", "100ms")
}

async fn withdrawal_until(app: &TestApp, account: &str, id: &str) -> Value {
    let path = format!("{}/transactions?limit=500", base(account));
    let ledger = items_until(app, &path, |items| {
        items
            .iter()
            .any(|t| t["id"] == id && t["status"] != "pending")
    })
    .await;
    ledger.into_iter().find(|t| t["id"] == id).unwrap()
}

async fn withdraw_one(app: &TestApp, account: &str, amount: &str) -> Value {
    let res = app
        .post(
            &format!("{}/withdraw", base(account)),
            &json!({"amount": amount, "to_address": "NDest"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let t = res.json()["transaction"].clone();
    assert_eq!(
        (&t["status"], &t["type"]),
        (&json!("pending"), &json!("withdrawal"))
    );
    t
}

async fn the_settler_pays_out_once_and_emits_one_event(backend: Backend) {
    let fake = Fake::start(vec![
        (200, json!({"done": false, "retry_after_seconds": 1})),
        (200, json!({"done": true, "success": true})),
    ])
    .await;
    let app = spawn_app_with(backend, settler(&fake)).await;
    assert_eq!(
        app.get("/readyz").await.json()["checks"]["actors"]["settler"],
        "running"
    );
    let (account, _) = funded(&app, "10").await;
    let events = listen(&app, &account, "gasbank.withdrawal.settled").await;
    let t = withdraw_one(&app, &account, "4").await;
    let id = t["id"].as_str().unwrap();
    let done = withdrawal_until(&app, &account, id).await;
    assert_eq!(
        (
            &done["status"],
            &done["net_amount"],
            &done["attempts"],
            &done["error"]
        ),
        (&json!("completed"), &json!("4"), &json!(2), &Value::Null)
    );
    assert!(done["completed_at"].is_string() && done["next_attempt_at"].is_null());
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("6".into(), "6".into(), "0".into())
    );
    let calls = fake.calls(id);
    assert_eq!(calls.len(), 2, "one call per attempt");
    assert_eq!(calls[0].0, format!("tier=gold&transaction_id={id}"));
    assert_eq!(calls[0].1.as_deref(), Some("Bearer gas-key-123"));
    let runs = executions_until(&app, &account, &events, |e| !e.is_empty()).await;
    assert_eq!(runs[0]["output"]["name"], "gasbank.withdrawal.settled");
    assert_eq!(
        runs[0]["output"]["data"],
        json!({"transaction_id": id, "gas_account_id": t["gas_account_id"],
               "status": "completed", "amount": "4", "error": null})
    );
    // The resolver keeps saying "done": nothing is claimed or paid again.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.calls(id).len(), 2);
    assert_eq!(
        executions_until(&app, &account, &events, |_| true)
            .await
            .len(),
        1
    );
    assert_eq!(balances(&gas_account(&app, &account).await).0, "6");
    app.stop().await;
}

async fn a_resolver_down_fails_the_withdrawal_and_releases_the_funds(backend: Backend) {
    let fake = Fake::start(vec![(503, json!({"error": "down"}))]).await;
    let app = spawn_app_with(backend, settler(&fake).env("GASBANK_MAX_ATTEMPTS", "2")).await;
    let (account, _) = funded(&app, "10").await;
    let t = withdraw_one(&app, &account, "3").await;
    let id = t["id"].as_str().unwrap();
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("10".into(), "7".into(), "3".into())
    );
    // The first call fails; the retry is 5 s later (back-off), then it gives up.
    let path = format!("{}/transactions", base(&account));
    let waiting = items_until(&app, &path, |items| {
        // Recorded (not merely claimed): a record moves `updated_at`.
        items
            .iter()
            .any(|t| t["id"] == id && t["attempts"] == 1 && t["updated_at"] != t["created_at"])
    })
    .await;
    let w = waiting.iter().find(|t| t["id"] == id).unwrap();
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(w[k].as_str().unwrap()).unwrap();
    let backoff = (at("next_attempt_at") - at("updated_at")).num_milliseconds();
    assert!((4900..=5100).contains(&backoff), "back-off {backoff} ms");
    let done = withdrawal_until(&app, &account, id).await;
    assert_eq!(
        (&done["status"], &done["net_amount"], &done["attempts"]),
        (&json!("failed"), &json!("0"), &json!(2))
    );
    assert_eq!(
        done["error"],
        "settlement timed out: gave up after 2 resolver attempts; the funds are available again"
    );
    assert_eq!(fake.calls(id).len(), 2);
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("10".into(), "10".into(), "0".into())
    );
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains("service_layer_gasbank_settlement_attempts_total{outcome=\"gave_up\"} 1"),
        "{metrics}"
    );
    assert!(metrics
        .contains("service_layer_gasbank_settlement_attempts_total{outcome=\"transient\"} 1"));
    app.stop().await;
}

async fn unsettled_withdrawals_expire(backend: Backend) {
    let fake = Fake::start(vec![(
        200,
        json!({"done": false, "retry_after_seconds": 3600}),
    )])
    .await;
    let app = spawn_app_with(backend, settler(&fake).env("GASBANK_TTL", "1s")).await;
    let (account, _) = funded(&app, "2").await;
    let t = withdraw_one(&app, &account, "2").await;
    let id = t["id"].as_str().unwrap();
    let done = withdrawal_until(&app, &account, id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(
        done["error"],
        "settlement timed out after 1s without a final answer; the funds are available again"
    );
    assert_eq!(
        fake.calls(id).len(),
        1,
        "the hour-long wait was cut to the expiry"
    );
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("2".into(), "2".into(), "0".into())
    );
    app.stop().await;
}

/// Two claims of one withdrawal (the first replica's lease ran out mid-call) both get
/// "done": the first answer settles it, the second changes nothing.
async fn a_withdrawal_settles_once_at_store_level(backend: Backend) {
    use actors::amount::Amount;
    use actors::gasbank::{NewWithdrawal, Target, TxStatus};
    use actors::resolver::Finish;
    let (stores, account, now) = stores_with_account(backend).await;
    let gas = &stores.gasbank;
    gas.ensure(account.id, None, now).await.unwrap();
    let deposit = actors::gasbank::NewDeposit {
        target: Target::Own,
        amount: Amount::parse("5").unwrap(),
        tx_id: "seed".into(),
        from_address: None,
        to_address: None,
    }
    .into_transaction(account.id, now);
    gas.deposit(&Target::Own, &deposit).await.unwrap();
    let w = NewWithdrawal {
        target: Target::Own,
        amount: Amount::parse("2").unwrap(),
        to_address: "N".into(),
    }
    .into_transaction(account.id, now);
    let unlimited = actors::quota::Quota::unlimited("t");
    gas.withdraw(&Target::Own, &w, unlimited).await.unwrap();
    let s = chrono::TimeDelta::seconds;
    let a = gas.claim(now, "A", now + s(30), 10).await.unwrap();
    assert_eq!((a.len(), a[0].attempts), (1, 1));
    assert!(
        gas.claim(now, "B", now + s(30), 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let b = gas.claim(now + s(31), "B", now + s(61), 10).await.unwrap();
    assert_eq!(
        (b.len(), b[0].attempts),
        (1, 2),
        "taken over after the lease"
    );
    assert!(
        !gas.renew(w.id, "A", now + s(90)).await.unwrap(),
        "A lost it"
    );
    let done = Finish::Succeeded(String::new());
    assert!(gas
        .settle(w.id, "B", 2, done.clone(), now + s(32))
        .await
        .unwrap());
    // A's late answer, and B's repeated one: refused, nothing moves.
    for owner in ["A", "B"] {
        let again = gas.settle(w.id, owner, 2, done.clone(), now + s(33)).await;
        assert!(
            matches!(again, Err(actors::StoreError::InvalidState(_))),
            "{owner}: {again:?}"
        );
    }
    let g = gas.gas_account(account.id).await.unwrap().unwrap();
    assert_eq!(
        (g.available.to_string(), g.pending.to_string()),
        ("3".into(), "0".into())
    );
    let ledger = gas
        .list_transactions(account.id, actors::page::PageRequest::default())
        .await
        .unwrap();
    let settled = ledger.items.iter().find(|t| t.id == w.id).unwrap();
    assert_eq!(settled.status, TxStatus::Completed);
    assert!(gas
        .claim(now + s(100), "C", now + s(130), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(gas.next_due().await.unwrap(), None);
    let events = stores
        .events
        .claim(now + s(100), "e", now + s(130), 100)
        .await
        .unwrap();
    let settled_events = events
        .iter()
        .filter(|e| e.name == "gasbank.withdrawal.settled")
        .count();
    assert_eq!(settled_events, 1, "one event");
}

/// Two replicas share the database and the resolver: each withdrawal is called about
/// once per attempt and settles once.
#[actix_web::test]
async fn two_replicas_settle_each_withdrawal_once() {
    let fake = Fake::start(vec![
        (200, json!({"done": false, "retry_after_seconds": 1})),
        (200, json!({"done": true, "success": true})),
    ])
    .await;
    let db = TestDb::migrated().await;
    let first = spawn_app_with(Backend::Postgres, settler(&fake).db(db.clone())).await;
    let second = spawn_app_with(Backend::Postgres, settler(&fake).db(db.clone())).await;
    let (account, _) = funded(&first, "100").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &first } else { &second };
        ids.push(
            withdraw_one(app, &account, "1").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let done = withdrawal_until(&first, &account, id).await;
        assert_eq!(
            (&done["status"], &done["attempts"]),
            (&json!("completed"), &json!(2))
        );
        assert_eq!(fake.calls(id).len(), 2, "one call per attempt");
    }
    assert_eq!(
        balances(&gas_account(&first, &account).await),
        ("80".into(), "80".into(), "0".into())
    );
    let client = db.client().await;
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM app_events WHERE name = 'gasbank.withdrawal.settled'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 20, "one event per withdrawal");
    first.stop().await;
    second.stop().await;
}

async fn devpack_gas_actions_are_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let run = |source: String| run_once(&app, &account, source);
    let out = run("() => { Devpack.gasBank.ensureAccount({wallet: 'NDev1'}); }".to_owned()).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    let g = gas_account(&app, &account).await;
    assert_eq!(out["actions"][0]["result"], json!({}));
    assert_eq!(g["wallet_address"], "NDev1");
    app.post(
        &format!("{}/deposit", base(&account)),
        &json!({"amount": "1.5", "tx_id": "dev"}),
    )
    .await;
    // Over the balance: the run fails, the trigger registered before it is not created.
    let out = run("() => { Devpack.triggers.register({rule: '@daily'});
                          Devpack.gasBank.withdraw({wallet: 'ndev1', amount: 2, to: 'NX'}); }"
        .to_owned())
    .await;
    assert_eq!(
        (&out["status"], &out["error_code"]),
        (&json!("failed"), &json!("action_failed"))
    );
    assert_eq!(
        out["error"],
        "devpack action action_2 (gasbank.withdraw) failed: insufficient funds: available 1.5, requested 2"
    );
    let triggers = app
        .get(&format!("/accounts/{account}/triggers"))
        .await
        .json();
    assert_eq!(triggers["items"], json!([]), "nothing applied");
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("1.5".into(), "1.5".into(), "0".into())
    );
    // Within the balance, by id: reserved.
    let source = format!(
        "() => {{ Devpack.gasBank.withdraw({{gasAccountId: '{}', amount: 0.5, to: 'NX'}}); }}",
        g["id"].as_str().unwrap()
    );
    let out = run(source).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    let tx = out["actions"][0]["result"]["transaction_id"].clone();
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("1.5".into(), "1".into(), "0.5".into())
    );
    let ledger = app
        .get(&format!("{}/transactions", base(&account)))
        .await
        .json();
    assert_eq!(ledger["items"][0]["id"], tx);
    assert_eq!(ledger["items"][0]["to_address"], "NX");
    // Applied, then undone: a later action refused at apply time (a duplicate job name)
    // rolls the withdrawal back, funds included.
    app.post(
        &format!("/accounts/{account}/automation/jobs"),
        &json!({"function_id": run_once(&app, &account, "() => 1".into()).await["function_id"],
                "name": "dup", "schedule": "@yearly"}),
    )
    .await;
    let out = run(
        "() => { Devpack.gasBank.withdraw({amount: 0.000005, to: 'NX'});
                          Devpack.automation.schedule({name: 'dup', schedule: '@daily'}); }"
            .to_owned(),
    )
    .await;
    assert_eq!(
        out["error"],
        "devpack action action_2 (automation.schedule) failed: job \"dup\" already exists"
    );
    assert_eq!(
        balances(&gas_account(&app, &account).await),
        ("1.5".into(), "1".into(), "0.5".into())
    );
    let ledger = app
        .get(&format!("{}/transactions", base(&account)))
        .await
        .json();
    assert_eq!(
        ledger["items"].as_array().unwrap().len(),
        2,
        "no row left behind"
    );
    // A small number is read as JavaScript prints it.
    let out =
        run("() => { Devpack.gasBank.withdraw({amount: 0.000005, to: 'NX'}) }".to_owned()).await;
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(gas_account(&app, &account).await["available"], "0.999995");
    // A gas account created by ensureAccount is undone too.
    let bob = app.create_account_id("bob").await;
    app.post(
        &format!("/accounts/{bob}/automation/jobs"),
        &json!({"function_id": run_once(&app, &bob, "() => 1".into()).await["function_id"],
                "name": "dup", "schedule": "@yearly"}),
    )
    .await;
    let out = run_once(
        &app,
        &bob,
        "() => { Devpack.gasBank.ensureAccount({wallet: 'NBob'});
                          Devpack.automation.schedule({name: 'dup', schedule: '@daily'}); }"
            .to_owned(),
    )
    .await;
    assert_eq!(out["status"], "failed");
    assert_eq!(app.get(&base(&bob)).await.json()["items"], json!([]));
    let again = app
        .post(&base(&bob), &json!({"wallet_address": "NBob"}))
        .await;
    assert_eq!(
        again.status,
        201,
        "the wallet was released: {}",
        again.text()
    );
    for (source, error) in [
        ("() => { Devpack.gasBank.withdraw({wallet: 'other', amount: 1, to: 'NX'}) }", "wallet: no gas account of this account has this wallet"),
        ("() => { Devpack.gasBank.withdraw({amount: 1}) }", "to: is required"),
        ("() => { Devpack.gasBank.withdraw({amount: 1e-9, to: 'x'}) }", "amount: at most 8 fractional digits"),
        ("() => { Devpack.gasBank.withdraw({amount: -1, to: 'x'}) }", "amount: must be a decimal number of GAS such as \"6.5\" (digits, at most one '.', no sign, exponent or spaces)"),
        ("() => { Devpack.gasBank.withdraw({gasAccountId: 'x', wallet: 'y', amount: 1, to: 'x'}) }", "give gasAccountId or wallet, not both"),
        ("() => { Devpack.gasBank.ensureAccount({wallet: 'a b'}) }", "wallet: must not contain whitespace"),
    ] {
        let out = run(source.to_owned()).await;
        let kind = if source.contains("ensure") { "gasbank.ensureAccount" } else { "gasbank.withdraw" };
        assert_eq!(out["error"], format!("devpack action action_1 ({kind}) failed: {error}"), "{source}");
    }
    app.stop().await;
}

/// Creates a function with `source` and executes it once; the execution.
async fn run_once(app: &TestApp, account: &str, source: String) -> Value {
    let f = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": format!("f{}", uuid::Uuid::new_v4().simple()), "source": source}),
        )
        .await
        .json();
    let path = format!(
        "/accounts/{account}/functions/{}/execute",
        f["id"].as_str().unwrap()
    );
    app.post(&path, &json!({})).await.json()
}
