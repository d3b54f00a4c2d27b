//! Secrets vault behaviour, on both stores, plus PostgreSQL-only checks of what is
//! stored (ciphertext only, versions kept) and of key rotation.

use crate::both_stores;
use crate::helpers::*;
use actix_web::http::Method;
use actors::secrets::{SecretName, SecretResolver};
use actors::AccountId;
use serde_json::{json, Value};

both_stores!(
    secrets_crud_never_returns_values,
    secret_input_rules,
    if_match_guards_updates_and_deletes,
    concurrent_if_match_updates_exactly_one_wins,
    concurrent_plain_updates_all_land,
    resolver_is_all_or_nothing_and_per_account,
    account_delete_removes_its_secrets,
);

/// Creates an account and returns (its id, its secrets base path).
async fn account(app: &TestApp, owner: &str) -> (String, String) {
    let id = app.create_account_id(owner).await;
    let base = format!("/accounts/{id}/secrets");
    (id, base)
}

async fn put_if_match(app: &TestApp, path: &str, if_match: &str, value: &str) -> Resp {
    read(
        app.req(Method::PUT, path)
            .insert_header(("If-Match", if_match))
            .send_json(&json!({"value": value}))
            .await
            .unwrap(),
    )
    .await
}

fn resolver(app: &TestApp) -> SecretResolver {
    SecretResolver::Actor(std::sync::Arc::new(app.secrets.clone()))
}

fn names(list: &[&str]) -> Vec<SecretName> {
    list.iter().map(|n| SecretName::parse(n).unwrap()).collect()
}

async fn secrets_crud_never_returns_values(backend: Backend) {
    let app = spawn_app(backend).await;
    let (account_id, base) = account(&app, "alice").await;
    let res = app
        .post(
            &base,
            &json!({"name": "API_KEY", "value": "sk-live-0123456789"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let created = res.json();
    let keys: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "created_at",
            "id",
            "name",
            "updated_at",
            "version"
        ]
    );
    assert_eq!(created["name"], "API_KEY");
    assert_eq!(created["version"], 1);
    assert_eq!(created["account_id"], account_id.as_str());

    // Looked up case-insensitively; the creation spelling is kept.
    let res = app.get(&format!("{base}/api_key")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(res.json(), created);

    let res = app
        .send(
            Method::PUT,
            &format!("{base}/Api_Key"),
            Some(&json!({"value": "sk-live-rotated"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let updated = res.json();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_eq!(
        app.get(&format!("{base}/API_KEY"))
            .await
            .header("etag")
            .as_deref(),
        Some("\"2\"")
    );

    app.post(&base, &json!({"name": "second", "value": "v"}))
        .await;
    let page1 = app.get(&format!("{base}?limit=1")).await.json();
    assert_eq!(page1["items"][0]["name"], "API_KEY");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .get(&format!("{base}?limit=1&cursor={cursor}"))
        .await
        .json();
    assert_eq!(page2["items"][0]["name"], "second");
    assert_eq!(page2["next_cursor"], Value::Null);
    // A cursor of the accounts list is not a cursor of this list.
    let accounts_page = app.get("/accounts?limit=1").await.json();
    if let Some(c) = accounts_page["next_cursor"].as_str() {
        assert_eq!(app.get(&format!("{base}?cursor={c}")).await.status, 400);
    }

    for res in [
        app.get(&base).await,
        app.get(&format!("{base}/API_KEY")).await,
    ] {
        assert!(
            !res.text().contains("sk-live"),
            "a value leaked: {}",
            res.text()
        );
    }

    let res = app.delete(&format!("{base}/api_key")).await;
    assert_eq!(res.status, 204);
    app.get(&format!("{base}/API_KEY"))
        .await
        .assert_error(404, "not_found", "secret not found");
    app.send(
        Method::PUT,
        &format!("{base}/API_KEY"),
        Some(&json!({"value": "x"})),
    )
    .await
    .assert_error(404, "not_found", "secret not found");
    app.delete(&format!("{base}/API_KEY"))
        .await
        .assert_error(404, "not_found", "secret not found");
}

async fn secret_input_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, base) = account(&app, "alice").await;
    let cases = [
        (json!({"value": "v"}), "name: is required"),
        (
            json!({"name": "has space", "value": "v"}),
            "name: character ' ' not allowed (use A-Z, a-z, 0-9, _ . -)",
        ),
        (
            json!({"name": "x".repeat(129), "value": "v"}),
            "name: must be at most 128 characters",
        ),
        (json!({"name": "n"}), "value: is required"),
        (
            json!({"name": "n", "value": ""}),
            "value: must not be empty",
        ),
        (
            json!({"name": "n", "value": "v".repeat(64 * 1024 + 1)}),
            "value: must be at most 65536 bytes",
        ),
    ];
    for (body, message) in cases {
        app.post(&base, &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    app.post(&base, &json!({"name": "n", "value": 5}))
        .await
        .assert_error(
            400,
            "invalid_request",
            "value: invalid type: integer `5`, expected a string",
        );
    // Values are kept exactly (not trimmed) and may be 64 KiB.
    assert_eq!(
        app.post(&base, &json!({"name": "Token", "value": " padded "}))
            .await
            .status,
        201
    );
    assert_eq!(
        app.post(
            &base,
            &json!({"name": "big", "value": "v".repeat(64 * 1024)})
        )
        .await
        .status,
        201
    );
    app.post(&base, &json!({"name": "TOKEN", "value": "v"}))
        .await
        .assert_error(409, "conflict", "secret \"TOKEN\" already exists");
    // Unknown accounts and malformed names in paths are 404.
    let ghost = format!("/accounts/{}/secrets", uuid::Uuid::new_v4());
    app.get(&ghost)
        .await
        .assert_error(404, "not_found", "account not found");
    app.post(&ghost, &json!({"name": "n", "value": "v"}))
        .await
        .assert_error(404, "not_found", "account not found");
    app.get(&format!("{base}/bad%20name"))
        .await
        .assert_error(404, "not_found", "secret not found");
    let list = app.get(&base).await.json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "rejected requests stored nothing"
    );
}

async fn if_match_guards_updates_and_deletes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, base) = account(&app, "alice").await;
    app.post(&base, &json!({"name": "db", "value": "one"}))
        .await;
    let path = format!("{base}/db");
    let res = put_if_match(&app, &path, "1", "two").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["version"], 2);
    put_if_match(&app, &path, "\"1\"", "three")
        .await
        .assert_error(409, "version_mismatch", "secret is at version 2, not 1");
    assert_eq!(
        put_if_match(&app, &path, "\"2\"", "three").await.json()["version"],
        3
    );
    put_if_match(&app, &path, "abc", "x").await.assert_error(
        400,
        "invalid_request",
        "If-Match: expected a version such as 3 or \"3\", got \"abc\"",
    );
    let delete = |v: &'static str| {
        let req = app
            .req(Method::DELETE, &path)
            .insert_header(("If-Match", v));
        async move { read(req.send().await.unwrap()).await }
    };
    delete("2")
        .await
        .assert_error(409, "version_mismatch", "secret is at version 3, not 2");
    assert_eq!(
        app.get(&path).await.json()["version"],
        3,
        "a failed delete changes nothing"
    );
    assert_eq!(delete("3").await.status, 204);
}

async fn concurrent_if_match_updates_exactly_one_wins(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, base) = account(&app, "alice").await;
    app.post(&base, &json!({"name": "race", "value": "v1"}))
        .await;
    let path = format!("{base}/race");
    let values: Vec<String> = (0..12).map(|i| format!("value-{i}")).collect();
    let results =
        futures_util::future::join_all(values.iter().map(|v| put_if_match(&app, &path, "1", v)))
            .await;
    let won: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "exactly one conditional update wins");
    for lost in results.iter().filter(|r| r.status != 200) {
        assert_eq!(lost.status, 409, "{}", lost.text());
        assert_eq!(lost.json()["code"], "version_mismatch");
    }
    assert_eq!(app.get(&path).await.json()["version"], 2);
}

async fn concurrent_plain_updates_all_land(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, base) = account(&app, "alice").await;
    app.post(&base, &json!({"name": "counter", "value": "v"}))
        .await;
    let path = format!("{base}/counter");
    let bodies: Vec<Value> = (0..6).map(|i| json!({"value": format!("v{i}")})).collect();
    let results = futures_util::future::join_all(
        bodies.iter().map(|b| app.send(Method::PUT, &path, Some(b))),
    )
    .await;
    assert!(
        results.iter().all(|r| r.status == 200),
        "{:?}",
        results.iter().map(|r| r.text()).collect::<Vec<_>>()
    );
    let mut versions: Vec<i64> = results
        .iter()
        .map(|r| r.json()["version"].as_i64().unwrap())
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        (2..=7).collect::<Vec<_>>(),
        "each update is its own version"
    );
}

async fn resolver_is_all_or_nothing_and_per_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, base_a) = account(&app, "alice").await;
    let (b, base_b) = account(&app, "bob").await;
    app.post(&base_a, &json!({"name": "API_KEY", "value": "alice-key"}))
        .await;
    app.post(&base_a, &json!({"name": "db", "value": "alice-db"}))
        .await;
    app.send(
        Method::PUT,
        &format!("{base_a}/db"),
        Some(&json!({"value": "alice-db-2"})),
    )
    .await;
    app.post(&base_b, &json!({"name": "API_KEY", "value": "bob-key"}))
        .await;
    let a = AccountId::parse(&a).unwrap();
    let b = AccountId::parse(&b).unwrap();

    let got = resolver(&app)
        .resolve(a, names(&["api_key", "db"]))
        .await
        .unwrap();
    assert_eq!(got.get("api_key").map(String::as_str), Some("alice-key"));
    assert_eq!(
        got.get("db").map(String::as_str),
        Some("alice-db-2"),
        "the latest version"
    );
    let got = resolver(&app)
        .resolve(b, names(&["API_KEY"]))
        .await
        .unwrap();
    assert_eq!(
        got.get("API_KEY").map(String::as_str),
        Some("bob-key"),
        "never another account's"
    );
    // All or nothing.
    let err = resolver(&app)
        .resolve(b, names(&["API_KEY", "db"]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "secret \"db\" not found");
    let err = SecretResolver::NotConfigured
        .resolve(a, names(&["db"]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "secret resolver not configured");
}

async fn account_delete_removes_its_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let (a, base) = account(&app, "alice").await;
    app.post(&base, &json!({"name": "s", "value": "v"})).await;
    assert_eq!(app.delete(&format!("/accounts/{a}")).await.status, 204);
    app.get(&base)
        .await
        .assert_error(404, "not_found", "account not found");
    let err = resolver(&app)
        .resolve(AccountId::parse(&a).unwrap(), names(&["s"]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "secret \"s\" not found");
}

/// Every row of every application table, as JSON text.
async fn dump_tables(db: &TestDb) -> String {
    let client = db.client().await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = String::new();
    for table in tables {
        for row in client
            .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
            .await
            .unwrap()
        {
            out.push_str(row.get::<_, &str>(0));
            out.push('\n');
        }
    }
    out
}

#[actix_web::test]
async fn postgres_stores_ciphertext_only_and_keeps_versions() {
    let app = spawn_app(Backend::Postgres).await;
    let db = app.db.clone().unwrap();
    let (_, base) = account(&app, "alice").await;
    let values = [
        "plaintext-canary-one",
        "plaintext-canary-two",
        "plaintext-canary-three",
    ];
    app.post(&base, &json!({"name": "canary", "value": values[0]}))
        .await;
    for v in &values[1..] {
        assert_eq!(
            app.send(
                Method::PUT,
                &format!("{base}/canary"),
                Some(&json!({"value": v}))
            )
            .await
            .status,
            200
        );
    }
    let dump = dump_tables(&db).await;
    assert!(dump.contains("v1."), "ciphertexts are stored: {dump}");
    for v in values {
        assert!(!dump.contains(v), "plaintext {v} found in the database");
    }
    let versions: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM app_secret_versions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 3, "old versions are kept");
}

#[actix_web::test]
async fn postgres_ciphertext_moved_to_another_row_does_not_decrypt() {
    let app = spawn_app(Backend::Postgres).await;
    let db = app.db.clone().unwrap();
    let (a, base) = account(&app, "alice").await;
    app.post(&base, &json!({"name": "one", "value": "first"}))
        .await;
    app.post(&base, &json!({"name": "two", "value": "second"}))
        .await;
    db.client()
        .await
        .batch_execute(
            "UPDATE app_secret_versions SET ciphertext = (
                 SELECT v.ciphertext FROM app_secret_versions v JOIN app_secrets s ON s.id = v.secret_id
                 WHERE s.name = 'one')
             WHERE secret_id = (SELECT id FROM app_secrets WHERE name = 'two')",
        )
        .await
        .unwrap();
    let err = resolver(&app)
        .resolve(AccountId::parse(&a).unwrap(), names(&["two"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret \"two\" cannot be decrypted with the configured keys"
    );
}

const OLD_KEY: &str = "hex:000102030405060708090a0b0c0d0e0f";
const NEW_KEY: &str = "base64:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn rewrap(db: &TestDb, key: &str, previous: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = appserver();
    cmd.args(["--rewrap-secrets", "--dsn", &db.url])
        .env("SECRET_ENCRYPTION_KEY", key);
    if let Some(previous) = previous {
        cmd.env("SECRET_ENCRYPTION_KEY_PREVIOUS", previous);
    }
    wait_with_limit(cmd.spawn().unwrap(), std::time::Duration::from_secs(60)).await
}

#[actix_web::test]
async fn postgres_rotation_previous_key_then_rewrap() {
    // Secrets written under the old key (AES-128-GCM).
    let first = spawn_app_with(
        Backend::Postgres,
        AppOptions::default().env("SECRET_ENCRYPTION_KEY", OLD_KEY),
    )
    .await;
    let db = first.db.clone().unwrap();
    let (a, base) = account(&first, "alice").await;
    for i in 0..5 {
        first
            .post(
                &base,
                &json!({"name": format!("s{i}"), "value": format!("value-{i}")}),
            )
            .await;
    }
    first
        .send(
            Method::PUT,
            &format!("{base}/s0"),
            Some(&json!({"value": "value-0b"})),
        )
        .await;
    // A webhook trigger: its secret is sealed under the same key and rewrapped too.
    let function = first
        .post(
            &format!("/accounts/{a}/functions"),
            &json!({"name": "hook", "source": "() => 1"}),
        )
        .await
        .json();
    let hook = first
        .post(
            &format!("/accounts/{a}/triggers"),
            &json!({"function_id": function["id"], "type": "webhook"}),
        )
        .await
        .json();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let hook_secret = hook["webhook_secret"].as_str().unwrap().to_owned();
    // The random signing key, generated at first start, is sealed under it too.
    let random_key = first.get("/random/public-key").await.json();
    first.stop().await;
    let account = AccountId::parse(&a).unwrap();
    let all = names(&["s0", "s1", "s2", "s3", "s4"]);

    // Rewrapping without the old key cannot open anything: every row fails, exit 1.
    let (code, stdout, _) = rewrap(&db, NEW_KEY, None).await;
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("rewrapped 0, already current 0, failed 8"),
        "{stdout}"
    );

    // New key current, old key previous: everything still resolves, new writes use the new key.
    let options = AppOptions::default()
        .db(db.clone())
        .env("SECRET_ENCRYPTION_KEY", NEW_KEY)
        .env("SECRET_ENCRYPTION_KEY_PREVIOUS", OLD_KEY);
    let second = spawn_app_with(Backend::Postgres, options).await;
    let got = resolver(&second)
        .resolve(account, all.clone())
        .await
        .unwrap();
    assert_eq!(got["s0"], "value-0b");
    assert_eq!(got["s4"], "value-4");
    second
        .post(&base, &json!({"name": "fresh", "value": "new"}))
        .await;

    // Rewrap while that server keeps running: 6 old versions, the webhook secret and the
    // random signing key move, the fresh one stays.
    let (code, stdout, stderr) = rewrap(&db, NEW_KEY, Some(OLD_KEY)).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("rewrapped 8, already current 1, failed 0"),
        "{stdout}"
    );
    let (_, stdout, _) = rewrap(&db, NEW_KEY, Some(OLD_KEY)).await;
    assert!(
        stdout.contains("rewrapped 0, already current 9, failed 0"),
        "idempotent: {stdout}"
    );
    second.stop().await;

    // The old key removed: every secret still resolves.
    let third = spawn_app_with(
        Backend::Postgres,
        AppOptions::default()
            .db(db.clone())
            .env("SECRET_ENCRYPTION_KEY", NEW_KEY),
    )
    .await;
    let got = resolver(&third).resolve(account, all).await.unwrap();
    assert_eq!(
        third.get("/random/public-key").await.json(),
        random_key,
        "the rewrapped signing key opens under the new key alone"
    );
    let body = br#"{"after":"rewrap"}"#;
    let res = read(
        third
            .client
            .post(third.url(&format!("/webhooks/{hook_id}")))
            .insert_header((
                "X-Webhook-Signature",
                actors::triggers::webhook_signature(&hook_secret, body),
            ))
            .send_body(body.to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        res.status,
        202,
        "the rewrapped webhook secret still verifies: {}",
        res.text()
    );
    assert_eq!(got["s0"], "value-0b");
    assert_eq!(got["s3"], "value-3");
    let key_ids: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(DISTINCT k) FROM (
                 SELECT key_id AS k FROM app_secret_versions
                 UNION ALL
                 SELECT split_part(webhook_secret, '.', 2) FROM app_triggers WHERE webhook_secret IS NOT NULL
             ) keys",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        key_ids, 1,
        "every version and the webhook secret are under the new key"
    );
}

#[actix_web::test]
async fn key_problems_stop_start_up_with_exit_2() {
    let child = appserver()
        .args([
            "--api-tokens",
            "t",
            "--dsn",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ])
        .env_remove("SECRET_ENCRYPTION_KEY")
        .spawn()
        .unwrap();
    let (code, _, stderr) = wait_with_limit(child, std::time::Duration::from_secs(60)).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("SECRET_ENCRYPTION_KEY must be set when using PostgreSQL"),
        "{stderr}"
    );

    let child = appserver()
        .args(["--api-tokens", "t"])
        .env("SECRET_ENCRYPTION_KEY", "hex:abcd")
        .spawn()
        .unwrap();
    let (code, _, stderr) = wait_with_limit(child, std::time::Duration::from_secs(60)).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(
            "invalid SECRET_ENCRYPTION_KEY: hex key decodes to 2 bytes; expected 16, 24 or 32"
        ),
        "{stderr}"
    );

    let child = appserver().arg("--rewrap-secrets").spawn().unwrap();
    let (code, _, stderr) = wait_with_limit(child, std::time::Duration::from_secs(60)).await;
    assert_eq!(code, Some(2), "rewrap is PostgreSQL-only: {stderr}");
}
