#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests beyond their schemas: the Deployment's security
posture and probes as docs/operations.md promises them, every Secret value read as a
file, and the PrometheusRule's groups written out for `promtool check rules` together
with every query of the Grafana dashboard (as recording rules, so promtool parses them).

    .ci/manifests.py rendered.yaml rules-out.yaml
"""
import json
import sys

import yaml


def main():
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    kinds = {d["kind"]: d for d in docs}
    expected = {"Deployment", "Service", "Ingress", "PodDisruptionBudget",
                "HorizontalPodAutoscaler", "NetworkPolicy", "Job", "ServiceMonitor",
                "PrometheusRule", "ConfigMap"}
    missing = expected - kinds.keys()
    assert not missing, f"missing kinds: {sorted(missing)}"
    for kind in ("Deployment", "Job"):
        pod = kinds[kind]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, kind
        # Secret files mounted 0400 are readable by a non-root uid only through fsGroup.
        assert pod["securityContext"].get("fsGroup") == pod["securityContext"]["runAsUser"], \
            f"{kind}: fsGroup must let uid {pod['securityContext']['runAsUser']} read its secrets"
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", kind
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, kind
            assert sc["allowPrivilegeEscalation"] is False, kind
            assert sc["capabilities"]["drop"] == ["ALL"], kind
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            for name in env:
                secret = name in ("DATABASE_URL", "API_TOKENS", "SECRET_ENCRYPTION_KEY") or name.endswith("_KEY")
                assert not secret, f"{kind}: {name} must come from a file (<NAME>_FILE)"
            assert "DATABASE_URL_FILE" in env, kind
    app = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--migrate=false" in app["args"], "replicas leave migrations to the Job"
    assert kinds["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["--migrate-only"]
    assert "replicas" not in kinds["Deployment"]["spec"], "the HPA owns replicas"
    assert kinds["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 1
    grace = kinds["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 10, "above SHUTDOWN_TIMEOUT"
    ingress = kinds["Ingress"]["spec"]
    assert ingress["tls"], "the Ingress terminates TLS"
    covered = {h for t in ingress["tls"] for h in t["hosts"]}
    served = {r["host"] for r in ingress["rules"]}
    assert served <= covered, f"Ingress hosts without TLS: {sorted(served - covered)}"
    dashboard = kinds["ConfigMap"]
    assert dashboard["metadata"]["labels"].get("grafana_dashboard") == "1", "Grafana sidecar label"
    panels = json.loads(dashboard["data"]["service-layer.json"])["panels"]
    queries = [{"record": f"dashboard_panel_{p['id']}_{t['refId']}",
                "expr": t["expr"].replace("$job", ".*")}
               for p in panels for t in p.get("targets", [])]
    assert len(queries) >= 20, f"{len(queries)} dashboard queries"
    groups = kinds["PrometheusRule"]["spec"]["groups"] + [{"name": "dashboard", "rules": queries}]
    with open(sys.argv[2], "w") as out:
        yaml.safe_dump({"groups": groups}, out)
    print(f"{sys.argv[1]}: {len(docs)} objects, posture and probes as documented")


if __name__ == "__main__":
    main()
