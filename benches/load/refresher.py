#!/usr/bin/env python3
"""Price feeds refreshed per second, and the refresh lag, of the real release binary.

    benches/load/refresher.py --feeds 1000 --seconds 30

Starts a local fake price source (Python, threaded) as `PRICEFEED_FETCH_URL`, one
appserver on a fresh PostgreSQL database, creates `--feeds` feeds `@every 1s` without
their own sources (so the default source serves them), with a deviation so small that
every observation is recorded (or `--deviation 50`: only the first), lets them run for `--seconds` after a warm-up, and reports:

- polls per second at the source, and snapshots per second (from the database);
- refresh lag p50 / p99 / max: each poll's arrival at the source minus the time it was
  due, the feed's first poll plus one interval per poll since (a feed keeps its phase);
- duplicates: two polls of a feed less than 200 ms apart, as two replicas taking the
  same due time would make (must be 0).

APPSERVER=<path> runs another build. Needs psql and a local PostgreSQL
(TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The database and process helpers of the scheduler benchmark, beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scheduler import ADMIN, KEY, TOKEN, call, free_port, psql, stop, wait_ready  # noqa: E402

POLLS = []
LOCK = threading.Lock()


class Source(BaseHTTPRequestHandler):
    # Keep-alive, as real price APIs are: HTTP/1.0 (the default) would make every poll a
    # new connection and a new thread, and measure that instead of the refresher.
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        base = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("base", [""])[0]
        with LOCK:
            POLLS.append((time.time(), base))
        body = json.dumps({"price": 100 + random.random(), "source": "bench"}).encode()
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--deviation", type=float, default=0.000001,
                    help="deviation_percent of the feeds: the default records every "
                         "observation (the source's price moves by up to 1 %%); 50 records "
                         "only the first")
    args = ap.parse_args()

    # The default listen backlog (5) would drop connections of a refresher polling
    # hundreds of feeds at once, and the retried connects would be measured as lag.
    ThreadingHTTPServer.request_queue_size = 4096
    source = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    source.daemon_threads = True
    threading.Thread(target=source.serve_forever, daemon=True).start()
    name = "bench_feeds_" + uuid.uuid4().hex[:8]
    psql(ADMIN, f"CREATE DATABASE {name}")
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    port = free_port()
    env = dict(os.environ, API_TOKENS=TOKEN, LISTEN_ADDR=f"127.0.0.1:{port}", DATABASE_URL=url,
               SECRET_ENCRYPTION_KEY=KEY, LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "error"),
               DATABASE_MAX_CONNECTIONS="20", MAX_FEEDS_PER_ACCOUNT="0",
               PRICEFEED_FETCH_URL=f"http://127.0.0.1:{source.server_address[1]}/price")
    servers = [subprocess.Popen([os.environ.get("APPSERVER", "target/release/appserver")], env=env)]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        account = call(base, "POST", "/accounts", {"owner": "bench"})["id"]
        for i in range(args.feeds):
            call(base, "POST", f"/accounts/{account}/pricefeeds",
                 {"base_asset": f"F{i}", "quote_asset": "USD", "deviation_percent": args.deviation,
                  "update_interval": "1s", "heartbeat_interval": "1h"})
        start = time.time()
        time.sleep(args.warmup + args.seconds)
    finally:
        stop(servers)
        source.shutdown()
    w0, w1 = start + args.warmup, start + args.warmup + args.seconds
    by_feed = {}
    for at, feed in POLLS:
        by_feed.setdefault(feed, []).append(at)
    lags, duplicates, polls = [], 0, 0
    for times in by_feed.values():
        times.sort()
        first = times[0]
        for prev, at in zip(times, times[1:]):
            if at - prev < 0.2:
                duplicates += 1
        for k, at in enumerate(times):
            if w0 <= at < w1:
                polls += 1
                # The k-th poll was due k intervals after the first (each take moves the
                # feed one interval on): a refresher falling behind shows a growing lag.
                lags.append(max(0.0, at - (first + k)))
    snapshots = int(psql(url, f"SELECT count(*) FROM app_price_feed_snapshots WHERE collected_at >= to_timestamp({w0}) AND collected_at < to_timestamp({w1})"))
    ms = lambda v: round(v * 1000)
    print(json.dumps({
        "feeds": args.feeds, "seconds": args.seconds,
        "polls_per_s": round(polls / args.seconds, 1),
        "snapshots_per_s": round(snapshots / args.seconds, 1),
        "lag_p50_ms": ms(percentile(lags, 0.5)), "lag_p99_ms": ms(percentile(lags, 0.99)),
        "lag_max_ms": ms(max(lags) if lags else 0), "duplicates": duplicates,
    }))
    psql(ADMIN, f"DROP DATABASE {name} WITH (FORCE)")
    return 0 if duplicates == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
