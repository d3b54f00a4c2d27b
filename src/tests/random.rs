//! Signed random: results verify at `/random/verify` and with an independent offline
//! verifier (`docs/examples/verify_random.py`, Python `cryptography`), any changed byte
//! is caught with the right reason, and the key is the same across restarts and
//! replicas (PostgreSQL) or the configured one.

use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};

both_stores!(random_results_verify_and_tampering_is_caught);

async fn random(app: &TestApp, account: &str, body: Value) -> Value {
    let res = app
        .post(&format!("/accounts/{account}/random"), &body)
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

async fn verdict(app: &TestApp, result: &Value) -> (bool, Value) {
    let res = app.post("/random/verify", result).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let v = res.json();
    (v["valid"].as_bool().unwrap(), v["reason"].clone())
}

fn b64(v: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn with_b64(result: &Value, field: &str, bytes: &[u8]) -> Value {
    use base64::Engine as _;
    let mut r = result.clone();
    r[field] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    r
}

async fn random_results_verify_and_tampering_is_caught(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let r = random(
        &app,
        &account,
        json!({"length": 100, "request_id": "draw:7.a-b_c"}),
    )
    .await;
    assert_eq!(
        (&r["account_id"], &r["request_id"], &r["length"]),
        (&json!(account), &json!("draw:7.a-b_c"), &json!(100))
    );
    assert_eq!(
        (
            b64(&r["value"]).len(),
            b64(&r["signature"]).len(),
            b64(&r["public_key"]).len()
        ),
        (100, 64, 32)
    );
    let key = app.get("/random/public-key").await.json();
    assert_eq!(key["algorithm"], "ed25519");
    assert_eq!(key["public_key"], r["public_key"]);
    use sha2::Digest as _;
    let id = hex::encode(&sha2::Sha256::digest(b64(&key["public_key"]))[..8]);
    assert_eq!(key["key_id"], id);
    // Public: no token needed.
    let anonymous = app.get_as(None, "/random/public-key").await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(verdict(&app, &r).await, (true, Value::Null));
    let mut without = r.clone();
    without.as_object_mut().unwrap().remove("public_key");
    without.as_object_mut().unwrap().remove("length");
    assert_eq!(verdict(&app, &without).await, (true, Value::Null));

    // Defaults; counters increase.
    let d = random(&app, &account, json!({})).await;
    assert_eq!(d["length"], 32);
    assert!(uuid::Uuid::parse_str(d["request_id"].as_str().unwrap()).is_ok());
    assert!(d["counter"].as_u64().unwrap() > r["counter"].as_u64().unwrap());

    // Any changed byte of value or signature, the counter, request id, account, time.
    let value = b64(&r["value"]);
    for i in [0, 50, 99] {
        let mut v = value.clone();
        v[i] ^= 0x80;
        assert_eq!(
            verdict(&app, &with_b64(&r, "value", &v)).await,
            (false, json!("value mismatch"))
        );
    }
    let signature = b64(&r["signature"]);
    for i in [0, 31, 63] {
        let mut s = signature.clone();
        s[i] ^= 1;
        assert_eq!(
            verdict(&app, &with_b64(&r, "signature", &s)).await,
            (false, json!("bad signature"))
        );
    }
    for (field, changed) in [
        ("counter", json!(r["counter"].as_u64().unwrap() + 1)),
        ("request_id", json!("draw:8")),
        ("account_id", json!(d["request_id"])),
        ("created_at", json!("2020-01-01T00:00:00.000000Z")),
    ] {
        let mut t = r.clone();
        t[field] = changed;
        assert_eq!(
            verdict(&app, &t).await,
            (false, json!("bad signature")),
            "{field}"
        );
    }
    let mut t = r.clone();
    t["length"] = json!(99);
    assert_eq!(verdict(&app, &t).await, (false, json!("length mismatch")));
    assert_eq!(
        verdict(&app, &with_b64(&r, "public_key", &[9; 32])).await,
        (false, json!("unknown key"))
    );

    // Undecodable input is 400; bad requests are 400 and unknown accounts 404.
    for (field, text, message) in [
        ("value", "@@", "value: not padded standard base64"),
        ("signature", "AAAA", "signature: must decode to 64 bytes"),
        ("public_key", "AAAA", "public_key: must decode to 32 bytes"),
    ] {
        let mut t = r.clone();
        t[field] = json!(text);
        app.post("/random/verify", &t)
            .await
            .assert_error(400, "validation_failed", message);
    }
    let mut t = r.clone();
    t["created_at"] = json!("yesterday");
    assert_eq!(app.post("/random/verify", &t).await.status, 400);
    let mut t = r.clone();
    t.as_object_mut().unwrap().remove("signature");
    app.post("/random/verify", &t).await.assert_error(
        400,
        "invalid_request",
        "missing field `signature`",
    );
    let path = format!("/accounts/{account}/random");
    for (body, message) in [
        (json!({"length": 0}), "length: must be 1-1024"),
        (json!({"length": 1025}), "length: must be 1-1024"),
        (
            json!({"request_id": ""}),
            "request_id: must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'",
        ),
        (
            json!({"request_id": "a b"}),
            "request_id: must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'",
        ),
        (
            json!({"request_id": "x".repeat(129)}),
            "request_id: must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'",
        ),
    ] {
        app.post(&path, &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    app.post(
        "/accounts/00000000-0000-4000-8000-000000000000/random",
        &json!({}),
    )
    .await
    .assert_error(404, "not_found", "account not found");
    let max = random(&app, &account, json!({"length": 1024})).await;
    assert_eq!(b64(&max["value"]).len(), 1024);
    assert_eq!(verdict(&app, &max).await, (true, Value::Null));
    app.stop().await;
}

/// Runs the offline verifier on `result`; its verdict line and exit status.
fn offline(result: &Value, key: &str) -> (String, bool) {
    let dir = std::env::temp_dir().join(format!("random-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("result.json");
    std::fs::write(&file, result.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/examples/verify_random.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&file)
        .arg(key)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "verifier failed: {stderr}");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        out.status.success(),
    )
}

#[actix_web::test]
async fn an_independent_verifier_agrees() {
    let app = spawn_app(Backend::Memory).await;
    let account = app.create_account_id("alice").await;
    let key = app.get("/random/public-key").await.json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for (length, request_id) in [(1, "a"), (64, "x:1.y"), (65, "b"), (1024, "c")] {
        let body = json!({"length": length, "request_id": request_id});
        let r = random(&app, &account, body).await;
        assert_eq!(
            offline(&r, &key),
            ("valid".to_owned(), true),
            "length {length}"
        );
        let mut v = b64(&r["value"]);
        v[length - 1] ^= 1;
        assert_eq!(
            offline(&with_b64(&r, "value", &v), &key),
            ("value mismatch".to_owned(), false)
        );
        let mut s = b64(&r["signature"]);
        s[10] ^= 1;
        assert_eq!(
            offline(&with_b64(&r, "signature", &s), &key),
            ("bad signature".to_owned(), false)
        );
        let mut t = r.clone();
        t["counter"] = json!(r["counter"].as_u64().unwrap() + 1);
        assert_eq!(offline(&t, &key), ("bad signature".to_owned(), false));
        let mut t = r.clone();
        t["request_id"] = json!("other");
        assert_eq!(offline(&t, &key), ("bad signature".to_owned(), false));
    }
    // The service's own key is the trust anchor: a result under another key is refused.
    let r = random(&app, &account, json!({})).await;
    assert_eq!(
        offline(&r, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").0,
        "unknown key"
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_key_is_shared_by_replicas_and_survives_restarts() {
    let db = TestDb::migrated().await;
    let options = || AppOptions::default().db(db.clone());
    let first = spawn_app_with(Backend::Postgres, options()).await;
    let second = spawn_app_with(Backend::Postgres, options()).await;
    let key = first.get("/random/public-key").await.json();
    assert_eq!(second.get("/random/public-key").await.json(), key);
    // A result from one replica verifies on the other; counters never repeat.
    let account = first.create_account_id("alice").await;
    let a = random(&first, &account, json!({})).await;
    let b = random(&second, &account, json!({})).await;
    assert_ne!(a["counter"], b["counter"]);
    assert_eq!(verdict(&second, &a).await, (true, Value::Null));
    first.stop().await;
    second.stop().await;
    let third = spawn_app_with(Backend::Postgres, options()).await;
    assert_eq!(
        third.get("/random/public-key").await.json(),
        key,
        "after a restart"
    );
    assert_eq!(verdict(&third, &a).await, (true, Value::Null));
    let c = random(&third, &account, json!({})).await;
    assert!(c["counter"].as_u64() > b["counter"].as_u64().max(a["counter"].as_u64()));
    let stored: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM app_signing_keys WHERE name = 'random'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "one key, stored once");
    third.stop().await;
}

#[actix_web::test]
async fn a_configured_key_is_used_and_memory_keys_are_per_process() {
    // RFC 8032 test 1: this seed's public key is known.
    let seed = "hex:9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("RANDOM_SIGNING_KEY", seed),
    )
    .await;
    let key = app.get("/random/public-key").await.json();
    assert_eq!(
        hex::encode(b64(&key["public_key"])),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    app.stop().await;
    let one = spawn_app(Backend::Memory).await;
    let two = spawn_app(Backend::Memory).await;
    assert_ne!(
        one.get("/random/public-key").await.json(),
        two.get("/random/public-key").await.json(),
        "ephemeral in memory mode"
    );
    one.stop().await;
    two.stop().await;
}

/// A stored key whose encryption key left the ring: the server starts, random answers
/// 503 and everything else works (CONTRACT.md §3.9).
#[actix_web::test]
async fn an_unopenable_stored_key_disables_random_only() {
    let db = TestDb::migrated().await;
    let first = spawn_app_with(
        Backend::Postgres,
        AppOptions::default()
            .db(db.clone())
            .env("SECRET_ENCRYPTION_KEY", &"a".repeat(32)),
    )
    .await;
    assert_eq!(first.get("/random/public-key").await.status, 200);
    first.stop().await;
    let second = spawn_app_with(
        Backend::Postgres,
        AppOptions::default()
            .db(db.clone())
            .env("SECRET_ENCRYPTION_KEY", &"b".repeat(32)),
    )
    .await;
    let refused = second.get("/random/public-key").await;
    refused.assert_error(503, "service_unavailable", "the random signing key cannot be opened with the secret key ring (see the start-up log); signed random is unavailable");
    let account = second.create_account_id("alice").await;
    assert_eq!(
        second
            .post(&format!("/accounts/{account}/random"), &json!({}))
            .await
            .status,
        503
    );
    assert_eq!(second.get("/healthz").await.status, 200);
    second.stop().await;
}
