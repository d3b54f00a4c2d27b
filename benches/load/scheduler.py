#!/usr/bin/env python3
"""Job starts per second and dispatch lag of the real release binary on PostgreSQL.

    benches/load/scheduler.py --jobs 1000 --replicas 1 --seconds 30
    benches/load/scheduler.py --kind cron --jobs 200            # cron triggers @every 1s
    benches/load/scheduler.py --kind webhook --rate 200         # webhooks per second

For `cron` and `webhook` the lag is the function's start (its execution record) minus the
firing's tick (cron) or the firing's creation, i.e. the 202 (webhook).

Creates a fresh database, starts `--replicas` appservers on it, creates `--jobs` jobs
`@every 1s` running a trivial function, lets them run for `--seconds`, stops the replicas
and computes from the database (never from the servers' own clocks or metrics):

- starts per second over the measured window (runs whose first attempt started in it);
- dispatch lag p50 / p99 / max = `started_at - scheduled_for` of those runs;
- runs still waiting (inserted, never started) at the end, and runs missed (occurrences
  that should have been inserted but were not: the backlog);
- duplicates: occurrences executed more than once (must be 0).

APPSERVER=<path> runs another build (a baseline). Needs psql and a local PostgreSQL
(TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

TOKEN = "bench-token-0123456789abcdef"
KEY = "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
ADMIN = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(url, sql):
    out = subprocess.run(
        ["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def wait_ready(base):
    """Waits (at most 20 s) until the server at `base` answers `/readyz`."""
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return
        except Exception:
            time.sleep(0.1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read() or b"{}")


def stop(servers):
    for s in servers:
        s.terminate()
    for s in servers:
        s.wait(timeout=30)


def lags(url, lag, tables, where):
    """count, p50, p99, max (ms) of the interval `lag` over the rows of `tables`."""
    ms = "coalesce(round(1000 * extract(epoch from {}))::bigint, 0)"
    row = psql(url, f"""
        SELECT count(*),
               {ms.format(f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {lag})")},
               {ms.format(f"percentile_cont(0.99) WITHIN GROUP (ORDER BY {lag})")},
               {ms.format(f"max({lag})")}
        FROM {tables} WHERE {where}""")
    return tuple(int(x) for x in row.split("|"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--kind", choices=["jobs", "cron", "webhook"], default="jobs")
    ap.add_argument("--rate", type=int, default=100, help="webhooks per second (--kind webhook)")
    ap.add_argument("--timeline", type=int, default=0, metavar="SECONDS",
                    help="also print starts/s and lag p99 per window of this many seconds")
    ap.add_argument("--aligned", action="store_true",
                    help="every job due at the same instant (worst case); default: phases "
                         "spread over the second, as jobs created at different times are")
    args = ap.parse_args()

    name = "bench_sched_" + uuid.uuid4().hex[:8]
    psql(ADMIN, f"CREATE DATABASE {name}")
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    binary = os.environ.get("APPSERVER", "target/release/appserver")
    servers = []
    try:
        ports = []
        for i in range(args.replicas):
            port = free_port()
            env = dict(os.environ, API_TOKENS=TOKEN, LISTEN_ADDR=f"127.0.0.1:{port}",
                       DATABASE_URL=url, SECRET_ENCRYPTION_KEY=KEY, LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "error"),
                       DATABASE_MAX_CONNECTIONS="20", MAX_JOBS_PER_ACCOUNT="0")
            servers.append(subprocess.Popen([binary], env=env))
            ports.append(port)
            # The first replica applies the migrations before the others start.
            wait_ready(f"http://127.0.0.1:{port}")
        base = f"http://127.0.0.1:{ports[0]}"
        account = call(base, "POST", "/accounts", {"owner": "bench"})["id"]
        function = call(base, "POST", f"/accounts/{account}/functions",
                        {"name": "noop", "source": "() => 1"})["id"]
        if args.kind != "jobs":
            return other_kinds(args, base, url, account, function, servers, name)
        # Created disabled, then enabled together, so every job starts in one window.
        ids = []
        for i in range(args.jobs):
            job = call(base, "POST", f"/accounts/{account}/automation/jobs",
                       {"function_id": function, "name": f"j{i}", "schedule": "@every 1s",
                        "enabled": False})
            ids.append(job["id"])
        spread = "" if args.aligned else " + random() * interval '1 second'"
        psql(url, f"UPDATE app_automation_jobs SET enabled = true, next_run = now(){spread}")
        start = time.time()
        time.sleep(args.warmup + args.seconds)
    finally:
        stop(servers)
    w0 = f"to_timestamp({start + args.warmup})"
    w1 = f"to_timestamp({start + args.warmup + args.seconds})"
    window = f"r.started_at >= {w0} AND r.started_at < {w1}"
    started, p50, p99, worst = lags(url, "r.started_at - r.scheduled_for",
                                    "app_automation_runs r", window)
    # When the function itself began (the execution record), for the same runs.
    _, exec_p50, exec_p99, _ = lags(
        url, "e.started_at - r.scheduled_for",
        "app_automation_runs r JOIN app_function_executions e ON e.id = r.execution_id", window)
    waiting = int(psql(url, "SELECT count(*) FROM app_automation_runs WHERE started_at IS NULL AND status = 'running'"))
    behind = psql(url, f"SELECT coalesce(round(extract(epoch from {w1} - min(next_run)))::bigint, 0) FROM app_automation_jobs WHERE enabled")
    dupes = int(psql(url, """
        SELECT count(*) FROM (
          SELECT input->>'automation_job', input->>'scheduled_for' FROM app_function_executions
          GROUP BY 1, 2 HAVING count(*) > 1) d"""))
    if args.timeline:
        for t in range(0, args.seconds, args.timeline):
            a, b = start + args.warmup + t, start + args.warmup + min(t + args.timeline, args.seconds)
            n, _, p99, worst = lags(url, "r.started_at - r.scheduled_for", "app_automation_runs r",
                                    f"r.started_at >= to_timestamp({a}) AND r.started_at < to_timestamp({b})")
            print(json.dumps({"from_s": t, "starts_per_s": round(n / (b - a), 1),
                              "lag_p99_ms": p99, "lag_max_ms": worst}), file=sys.stderr)
    result = {
        "jobs": args.jobs, "replicas": args.replicas, "seconds": args.seconds,
        "aligned": args.aligned,
        "starts_per_s": round(started / args.seconds, 1),
        "lag_p50_ms": p50, "lag_p99_ms": p99, "lag_max_ms": worst,
        "function_start_p50_ms": exec_p50, "function_start_p99_ms": exec_p99,
        "waiting_at_end": waiting, "next_run_behind_s": int(behind), "duplicates": dupes,
    }
    print(json.dumps(result))
    psql(ADMIN, f"DROP DATABASE {name} WITH (FORCE)")
    return 0 if dupes == 0 else 1


def other_kinds(args, base, url, account, function, servers, name):
    """Cron triggers `@every 1s`, or signed webhooks at `--rate` per second."""
    import hashlib
    import hmac
    import threading
    try:
        if args.kind == "cron":
            for i in range(args.jobs):
                call(base, "POST", f"/accounts/{account}/triggers",
                     {"function_id": function, "rule": "@every 1s", "enabled": False})
            spread = "" if args.aligned else " + random() * interval '1 second'"
            psql(url, f"UPDATE app_triggers SET enabled = true, next_run = now(){spread}")
            start = time.time()
            time.sleep(args.warmup + args.seconds)
        else:
            hook = call(base, "POST", f"/accounts/{account}/triggers",
                        {"function_id": function, "type": "webhook"})
            body = b"{}"
            sig = "sha256=" + hmac.new(hook["webhook_secret"].encode(), body,
                                       hashlib.sha256).hexdigest()
            start = time.time()
            end = start + args.warmup + args.seconds
            threads = 8
            refused = [0]

            def sender(k):
                n = 0
                while True:
                    due = start + (n * threads + k) / args.rate
                    if due >= end:
                        return
                    time.sleep(max(0, due - time.time()))
                    req = urllib.request.Request(
                        base + f"/webhooks/{hook['id']}", method="POST", data=body,
                        headers={"X-Webhook-Signature": sig,
                                 "Content-Type": "application/json"})
                    try:
                        urllib.request.urlopen(req, timeout=30).read()
                    except Exception:
                        refused[0] += 1
                    n += 1

            pool = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            time.sleep(2)
    finally:
        stop(servers)
    w0 = f"to_timestamp({start + args.warmup})"
    w1 = f"to_timestamp({start + args.warmup + args.seconds})"
    origin = "f.tick_at" if args.kind == "cron" else "f.created_at"
    started, p50, p99, worst = lags(
        url, f"e.started_at - {origin}",
        "app_trigger_firings f JOIN app_function_executions e ON e.id = f.execution_id",
        f"e.started_at >= {w0} AND e.started_at < {w1}")
    # (No duplicate count here: a firing's execution id is its record's primary key.)
    result = {"kind": args.kind, "replicas": args.replicas, "seconds": args.seconds,
              "starts_per_s": round(started / args.seconds, 1),
              "lag_p50_ms": p50, "lag_p99_ms": p99, "lag_max_ms": worst}
    if args.kind == "cron":
        result["triggers"] = args.jobs
    else:
        result["rate"] = args.rate
        result["refused"] = refused[0]
    print(json.dumps(result))
    psql(ADMIN, f"DROP DATABASE {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
