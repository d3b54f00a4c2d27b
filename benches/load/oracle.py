#!/usr/bin/env python3
"""Oracle requests resolved per second by the real release binary.

    benches/load/oracle.py --requests 5000 [--replicas 2] [--not-done 1]

Starts a local fake resolver (Python, threaded, keep-alive) as `ORACLE_RESOLVER_URL`,
`--replicas` appservers on one fresh PostgreSQL database, one account and data source,
then inserts `--requests` pending requests at once (one SQL statement: the dispatcher is
measured, not request creation) and waits until every one is final. The resolver answers
"not done, retry after 1 s" to the first `--not-done` calls of each request, then
"done". Reports, from the database and the resolver:

- resolved per second: requests over the span from their creation to the last
  completion (including up to one ORACLE_POLL_INTERVAL before the first claim: a bulk
  insert does not wake the dispatcher);
- resolver calls, and calls per request (must equal `--not-done` + 1: the resolver is
  called once per attempt, whichever replica makes it);
- latency p50 / p99 / max: `completed_at - created_at`.

APPSERVER=<path> runs another build. Needs psql and a local PostgreSQL
(TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scheduler import ADMIN, KEY, TOKEN, call, free_port, psql, stop, wait_ready  # noqa: E402

CALLS = {}
LOCK = threading.Lock()
NOT_DONE = 0


class Resolver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        rid = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("request_id", [""])[0]
        with LOCK:
            n = CALLS.get(rid, 0)
            CALLS[rid] = n + 1
        if n < NOT_DONE:
            answer = {"done": False, "retry_after_seconds": 1}
        else:
            answer = {"done": True, "success": True, "result": "42"}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0


def main():
    global NOT_DONE
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--not-done", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()
    NOT_DONE = args.not_done

    ThreadingHTTPServer.request_queue_size = 4096
    resolver = ThreadingHTTPServer(("127.0.0.1", 0), Resolver)
    resolver.daemon_threads = True
    threading.Thread(target=resolver.serve_forever, daemon=True).start()
    name = "bench_oracle_" + uuid.uuid4().hex[:8]
    psql(ADMIN, f"CREATE DATABASE {name}")
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    servers, bases = [], []
    for _ in range(args.replicas):
        port = free_port()
        env = dict(os.environ, API_TOKENS=TOKEN, LISTEN_ADDR=f"127.0.0.1:{port}",
                   DATABASE_URL=url, SECRET_ENCRYPTION_KEY=KEY,
                   LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "error"),
                   DATABASE_MAX_CONNECTIONS="20", MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT="0",
                   ORACLE_RESOLVER_URL=f"http://127.0.0.1:{resolver.server_address[1]}/resolve")
        servers.append(subprocess.Popen([os.environ.get("APPSERVER", "target/release/appserver")], env=env))
        bases.append(f"http://127.0.0.1:{port}")
        # One at a time: the first applies the migrations.
        wait_ready(bases[-1])
    try:
        return measure(args, url, bases)
    finally:
        stop(servers)
        resolver.shutdown()
        psql(ADMIN, f"DROP DATABASE {name} WITH (FORCE)")


def measure(args, url, bases):
    account = call(bases[0], "POST", "/accounts", {"owner": "bench"})["id"]
    source = call(bases[0], "POST", f"/accounts/{account}/oracle/sources",
                  {"name": "bench", "url": "https://example.com"})["id"]
    psql(url, f"""INSERT INTO app_oracle_requests (id, account_id, data_source_id, status,
                      payload, attempts, next_attempt_at, created_at, updated_at)
                  SELECT gen_random_uuid(), '{account}', '{source}', 'pending', '', 0,
                         now(), now(), now()
                  FROM generate_series(1, {args.requests})""")
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        left = int(psql(url, "SELECT count(*) FROM app_oracle_requests WHERE completed_at IS NULL"))
        if left == 0:
            break
        time.sleep(0.5)
    stats = psql(url, """SELECT count(*) FILTER (WHERE status = 'succeeded'),
                            count(*) FILTER (WHERE completed_at IS NULL),
                            extract(epoch FROM max(completed_at) - min(created_at)),
                            sum(attempts)
                     FROM app_oracle_requests""").split("|")
    succeeded, unfinished, span, attempts = int(stats[0]), int(stats[1]), float(stats[2] or 0), int(stats[3] or 0)
    latencies = [float(v) for v in psql(url, "SELECT extract(epoch FROM completed_at - created_at) FROM app_oracle_requests WHERE completed_at IS NOT NULL").split()]
    calls = sum(CALLS.values())
    per_request = sorted(set(CALLS.values()))
    ms = lambda v: round(v * 1000)
    print(json.dumps({
        "requests": args.requests, "replicas": args.replicas, "not_done": args.not_done,
        "succeeded": succeeded, "unfinished": unfinished,
        "resolved_per_s": round(succeeded / span, 1) if span else 0,
        "resolver_calls": calls, "attempts_recorded": attempts,
        "calls_per_request": per_request,
        "latency_p50_ms": ms(percentile(latencies, 0.5)),
        "latency_p99_ms": ms(percentile(latencies, 0.99)),
        "latency_max_ms": ms(max(latencies) if latencies else 0),
    }))
    ok = unfinished == 0 and per_request == [args.not_done + 1] and calls == attempts
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
