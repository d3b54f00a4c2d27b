//! The OpenAPI document (`/openapi.json`) against the router and against docs/api.md:
//! no route served without being described, none described that is not served, every
//! reference resolvable, and the route index of docs/api.md the same as the document's.

use crate::helpers::*;
use actix_web::http::Method;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(METHOD, path)` of every operation of the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[actix_web::test]
async fn document_describes_exactly_the_routes_served() {
    let app = spawn_app(Backend::Memory).await;
    // Public: a client reads it before it has a token.
    let res = app.get_as(None, "/openapi.json").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("application/json")
    );
    let doc = res.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );

    let documented = operations(&doc);
    let served: BTreeSet<(String, String)> = service_layer::http::routes::endpoints()
        .map(|(path, method)| (method.as_str().to_owned(), path.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in the document: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in the document but not served: {unserved:?}"
    );
    assert!(served.len() >= 60, "{} routes", served.len());
    // The app registers routes only through that table (no `.service`/`.route` beside
    // it), so the table is the router.
    let startup = include_str!("../startup.rs");
    assert_eq!(startup.matches(".configure(").count(), 1);
    assert!(startup.contains(".configure(http::routes)"));
    for other in [".service(", ".route(", "web::resource(", "web::scope("] {
        assert!(
            !startup.contains(other),
            "src/startup.rs registers routes with {other}"
        );
    }

    // Each one reaches a handler: never the router's 404 or 405.
    for (method, path) in &documented {
        let concrete = path
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    "00000000-0000-4000-8000-000000000000"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, Method::POST | Method::PUT | Method::PATCH)
            .then(|| serde_json::json!({}));
        let res = app.send(method.clone(), &concrete, body.as_ref()).await;
        let routed =
            res.status != 405 && !(res.status == 404 && res.text().contains("no route for"));
        assert!(routed, "{method} {concrete}: {} {}", res.status, res.text());
    }

    // Every operation answers something in JSON on success (or nothing: 204), names
    // its errors, and every reference resolves.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let responses = item[*method]["responses"].as_object().unwrap();
            let success: Vec<_> = responses.keys().filter(|k| k.starts_with('2')).collect();
            assert!(!success.is_empty(), "{method} {path}: no success response");
            assert!(
                responses.contains_key("4XX"),
                "{method} {path}: no error response"
            );
        }
    }
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {target}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{target} does not resolve"
        );
    }
}

/// The rows of docs/api.md's "Route index": method, path, success statuses (the other
/// columns are prose).
fn api_md_index() -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let section = text
        .split("\n## Route index\n")
        .nth(1)
        .expect("docs/api.md has a `## Route index` section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let [method, path, status, ..] = cells.as_slice() else {
                return None;
            };
            let path = path.strip_prefix('`')?.strip_suffix('`')?;
            METHODS
                .contains(&method.to_lowercase().as_str())
                .then(|| (method.to_string(), path.to_owned(), status.to_string()))
        })
        .collect()
}

#[actix_web::test]
async fn api_md_route_index_matches_the_document() {
    let app = spawn_app(Backend::Memory).await;
    let doc = app.get("/openapi.json").await.json();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let responses = item[*method]["responses"].as_object().unwrap();
            let success: Vec<&str> = responses
                .keys()
                .filter(|k| k.starts_with('2'))
                .map(String::as_str)
                .collect();
            documented.insert((method.to_uppercase(), path.clone(), success.join(", ")));
        }
    }
    let listed = api_md_index();
    let missing: Vec<_> = documented.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "in the document, not in docs/api.md's route index: {missing:#?}"
    );
    assert!(
        extra.is_empty(),
        "in docs/api.md's route index, not in the document: {extra:#?}"
    );
}

/// The shapes: every property of each response schema is named in docs/api.md's
/// description of that resource (`**Account**: \`id\`, \`owner\` …`), so neither can gain
/// or rename a field without the other.
#[actix_web::test]
async fn api_md_describes_every_field_of_each_resource() {
    let app = spawn_app(Backend::Memory).await;
    let doc = app.get("/openapi.json").await.json();
    let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let pairs = [
        ("Account", "Account"),
        ("Token", "Token"),
        ("Secret", "SecretMetadata"),
        ("Function", "Function"),
        ("Execution", "Execution"),
        ("Job", "Job"),
        ("JobRun", "Run"),
        ("PriceFeed", "Feed"),
        ("PriceSnapshot", "Snapshot"),
        ("OracleSource", "DataSource"),
        ("OracleRequest", "Request"),
        ("GasAccount", "GasAccount"),
        ("GasTransaction", "GasTransaction"),
        ("RandomResult", "RandomResult"),
        ("Trigger", "Trigger"),
    ];
    for (schema, label) in pairs {
        let start = api
            .find(&format!("\n**{label}**:"))
            .unwrap_or_else(|| panic!("docs/api.md has no **{label}**: paragraph"));
        let paragraph = api[start + 1..].split("\n\n").next().unwrap();
        let properties = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {schema}"));
        assert!(!properties.is_empty(), "{schema} has no properties");
        for name in properties.keys() {
            assert!(
                paragraph.contains(&format!("`{name}`")),
                "{schema}.{name} is not described in docs/api.md's **{label}** paragraph"
            );
        }
    }
}
