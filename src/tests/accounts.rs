//! Accounts API behaviour, run against both stores.

use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};

both_stores!(
    create_get_and_shape,
    create_validation_changes_nothing,
    list_paginates_in_creation_order,
    list_rejects_bad_limit_and_cursor,
    patch_updates_fields,
    patch_rejects_bad_input,
    delete_removes_the_account,
    unknown_and_malformed_ids_are_404,
    concurrent_creates_are_all_kept,
);

fn is_timestamp(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    // 2025-01-31T09:30:00.000000Z
    s.len() == 27
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

async fn create_get_and_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .post(
            "/accounts",
            &json!({"owner": "  alice  ", "metadata": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let created = res.json();
    let keys: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["created_at", "id", "metadata", "owner", "updated_at"]
    );
    assert_eq!(created["owner"], "alice");
    assert_eq!(created["metadata"], json!({"tier": "gold"}));
    assert!(is_timestamp(&created["created_at"]), "{created}");
    assert_eq!(created["created_at"], created["updated_at"]);
    let id = created["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(id, id.to_lowercase());

    let fetched = app.get(&format!("/accounts/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), created);

    // Metadata is optional and defaults to an empty map; null counts as empty.
    let bare = app
        .post("/accounts", &json!({"owner": "bob", "metadata": null}))
        .await;
    assert_eq!(bare.status, 201);
    assert_eq!(bare.json()["metadata"], json!({}));
}

async fn create_validation_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (json!({}), "owner: is required"),
        (json!({"owner": "   "}), "owner: is required"),
        (
            json!({"owner": "x".repeat(257)}),
            "owner: must be 1-256 characters",
        ),
        (
            json!({"owner": "a", "metadata": {"k": "v".repeat(1025)}}),
            "metadata.k: must be at most 1024 characters",
        ),
        (
            json!({"owner": "a", "metadata": {"": "v"}}),
            "metadata: keys must be 1-128 characters",
        ),
    ];
    for (body, message) in cases {
        app.post("/accounts", &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    app.post("/accounts", &json!({"owner": "a", "metadata": many}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "metadata: at most 64 entries allowed",
        );
    // Exactly at the limits is fine.
    let res = app
        .post("/accounts", &json!({"owner": "x".repeat(256)}))
        .await;
    assert_eq!(res.status, 201);
    let list = app.get("/accounts").await.json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "rejected requests created nothing"
    );
}

async fn list_paginates_in_creation_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.create_account(&format!("owner-{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let empty_page = app.get("/accounts").await.json();
    assert_eq!(empty_page["next_cursor"], Value::Null);
    assert_eq!(empty_page["items"].as_array().unwrap().len(), 5);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/accounts?limit=2&cursor={c}"),
            None => "/accounts?limit=2".to_owned(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        // An insert between pages does not disturb the walk (keyset pagination).
        if pages == 1 {
            ids.push(app.create_account_id("late").await);
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "creation order, nothing skipped or repeated");

    // Exactly `limit` items left: no next cursor on the last page.
    let page = app.get("/accounts?limit=6").await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 6);
    assert_eq!(page["next_cursor"], Value::Null);
    // Limits above 500 act as 500.
    assert_eq!(app.get("/accounts?limit=100000").await.status, 200);
}

async fn list_rejects_bad_limit_and_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    for bad in ["0", "-1", "abc", "1.5"] {
        app.get(&format!("/accounts?limit={bad}"))
            .await
            .assert_error(
                400,
                "invalid_request",
                &format!("limit: must be a positive integer, got \"{bad}\""),
            );
    }
    app.get("/accounts?cursor=garbage").await.assert_error(
        400,
        "invalid_request",
        "cursor: not a cursor of this list",
    );
    // A cursor of another list (a different scope) is refused too.
    use base64::Engine as _;
    let foreign = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "accounts/x/secrets|1700000000000000|{}",
        uuid::Uuid::new_v4()
    ));
    app.get(&format!("/accounts?cursor={foreign}"))
        .await
        .assert_error(400, "invalid_request", "cursor: not a cursor of this list");
    let res = app.get("/accounts?color=blue").await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["code"], "invalid_request");
    assert!(
        res.json()["error"].as_str().unwrap().contains("color"),
        "{}",
        res.text()
    );
}

async fn patch_updates_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .post(
            "/accounts",
            &json!({"owner": "alice", "metadata": {"a": "1"}}),
        )
        .await
        .json();
    let path = format!("/accounts/{}", created["id"].as_str().unwrap());

    let res = app.patch(&path, &json!({"owner": " carol "})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let updated = res.json();
    assert_eq!(updated["owner"], "carol");
    assert_eq!(
        updated["metadata"],
        json!({"a": "1"}),
        "omitted field unchanged"
    );
    assert_eq!(updated["created_at"], created["created_at"]);
    assert!(updated["updated_at"].as_str() >= created["updated_at"].as_str());

    let replaced = app
        .patch(&path, &json!({"metadata": {"b": "2"}}))
        .await
        .json();
    assert_eq!(
        replaced["metadata"],
        json!({"b": "2"}),
        "metadata is replaced, not merged"
    );
    let cleared = app.patch(&path, &json!({"metadata": null})).await.json();
    assert_eq!(cleared["metadata"], json!({}));
    assert_eq!(cleared["owner"], "carol");
    assert_eq!(app.get(&path).await.json(), cleared);
}

async fn patch_rejects_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create_account("alice").await;
    let path = format!("/accounts/{}", created["id"].as_str().unwrap());
    app.patch(&path, &json!({"owner": null}))
        .await
        .assert_error(400, "validation_failed", "owner: must not be null");
    app.patch(&path, &json!({"owner": ""})).await.assert_error(
        400,
        "validation_failed",
        "owner: is required",
    );
    app.patch(&path, &json!({"id": "x"})).await.assert_error(
        400,
        "invalid_request",
        "unknown field `id`, expected `owner` or `metadata`",
    );
    app.patch(&path, &json!({"owner": 5})).await.assert_error(
        400,
        "invalid_request",
        "owner: invalid type: integer `5`, expected a string",
    );
    assert_eq!(app.get(&path).await.json(), created, "nothing changed");
}

async fn delete_removes_the_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let keep = app.create_account("keep").await;
    let gone = app.create_account("gone").await;
    let path = format!("/accounts/{}", gone["id"].as_str().unwrap());
    let res = app.delete(&path).await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    app.get(&path)
        .await
        .assert_error(404, "not_found", "account not found");
    app.delete(&path)
        .await
        .assert_error(404, "not_found", "account not found");
    app.patch(&path, &json!({"owner": "x"})).await.assert_error(
        404,
        "not_found",
        "account not found",
    );
    let list = app.get("/accounts").await.json();
    assert_eq!(list["items"], json!([keep]));
}

async fn unknown_and_malformed_ids_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create_account("alice").await;
    let id = created["id"].as_str().unwrap();
    for path in [
        format!("/accounts/{}", uuid::Uuid::new_v4()),
        "/accounts/not-a-uuid".to_owned(),
        format!("/accounts/{}", id.to_uppercase()),
        format!("/accounts/{}", id.replace('-', "")),
    ] {
        app.get(&path)
            .await
            .assert_error(404, "not_found", "account not found");
    }
}

async fn concurrent_creates_are_all_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let bodies: Vec<Value> = (0..40).map(|i| json!({"owner": format!("p{i}")})).collect();
    let creates = bodies.iter().map(|b| app.post("/accounts", b));
    let results = futures_util::future::join_all(creates).await;
    assert!(results.iter().all(|r| r.status == 201));
    let mut created: Vec<String> = results
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    let list = app.get("/accounts?limit=500").await.json();
    let mut listed: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    created.sort();
    listed.sort();
    assert_eq!(created, listed);
}

#[actix_web::test]
async fn postgres_data_survives_a_restart() {
    let first = spawn_app(Backend::Postgres).await;
    let db = first.db.clone().unwrap();
    let created = first.create_account("durable").await;
    first.stop().await;

    let second = spawn_app_with(Backend::Postgres, AppOptions::default().db(db)).await;
    let path = format!("/accounts/{}", created["id"].as_str().unwrap());
    let res = second.get(&path).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), created);
}

#[actix_web::test]
async fn postgres_delete_cascades_at_the_database() {
    // Deleting through the API removes the row itself; child tables declare
    // ON DELETE CASCADE, checked here against the catalogue so a new table cannot forget it.
    let app = spawn_app(Backend::Postgres).await;
    let db = app.db.clone().unwrap();
    let created = app.create_account("alice").await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/accounts/{id}")).await.status, 204);
    let client = db.client().await;
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM app_accounts WHERE id = $1",
            &[&uuid::Uuid::parse_str(id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let non_cascading: Vec<String> = client
        .query(
            "SELECT conrelid::regclass::text FROM pg_constraint
             WHERE contype = 'f' AND confrelid = 'app_accounts'::regclass AND confdeltype <> 'c'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        non_cascading.is_empty(),
        "foreign keys to app_accounts without ON DELETE CASCADE: {non_cascading:?}"
    );
}
