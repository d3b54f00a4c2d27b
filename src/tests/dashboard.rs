//! The Grafana dashboard (manifests/base/grafana/service-layer.json) charts exactly the
//! metrics docs/api.md lists; the families that exist from start-up are checked in the
//! server's own /metrics (the others appear with their first observation).

use crate::helpers::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `service_layer_…` names in `text`, histogram series folded into their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("service_layer_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(family.to_owned());
        rest = &tail[end..];
    }
    names
}

#[actix_web::test]
async fn dashboard_charts_every_documented_metric_and_nothing_else() {
    let dashboard: Value =
        serde_json::from_str(&repo_file("manifests/base/grafana/service-layer.json")).unwrap();
    let queries: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    let charted = metric_names(&queries.join("\n"));

    let api = repo_file("docs/api.md");
    let table = api
        .split("\n## Metrics\n")
        .nth(1)
        .expect("## Metrics section");
    let documented = metric_names(table.split("\n## ").next().unwrap());
    assert!(documented.len() >= 19, "{documented:?}");
    assert_eq!(charted, documented, "dashboard vs docs/api.md Metrics");

    // The families with a series from start-up (the labelled others appear with their
    // first observation) are exposed under their documented names.
    let app = spawn_app(Backend::Memory).await;
    app.get("/accounts").await;
    let exposed = metric_names(&app.get("/metrics").await.text());
    for name in [
        "service_layer_http_requests_total",
        "service_layer_http_request_duration_seconds",
        "service_layer_http_inflight_requests",
        "service_layer_executor_busy",
        "service_layer_executor_queued",
        "service_layer_actor_up",
        "service_layer_actor_restarts_total",
        "service_layer_actor_mailbox_depth",
    ] {
        assert!(documented.contains(name), "{name} not documented");
        assert!(exposed.contains(name), "{name} not exposed");
    }
}
