#!/usr/bin/env python3
"""Withdrawals per second by the real release binary on PostgreSQL.

    benches/load/gasbank.py --accounts 1   [--clients 16] [--seconds 20]   # one gas account, contended
    benches/load/gasbank.py --accounts 100 [--clients 16] [--seconds 20]   # spread over many
    benches/load/gasbank.py --op get ...                                    # baseline: GET …/gasbank

Starts one appserver (no settler: withdrawals stay pending, so only the reservation is
measured) on a fresh database, gives each of `--accounts` accounts a gas account holding
1,000,000 GAS, then runs `--clients` keep-alive HTTP clients for `--seconds`, each posting
withdrawals of 0.00000001 GAS round-robin over the accounts. Reports withdrawals/s (201s
over the run), latency p50 / p99 / max, and checks afterwards, in the database, that every
gas account still holds balance = available + pending = 1,000,000 with `pending` equal to
the sum of its pending rows, and that there is exactly one row per 201.

APPSERVER=<path> runs another build. Needs psql and a local PostgreSQL
(TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scheduler import ADMIN, KEY, TOKEN, call, free_port, psql, stop, wait_ready  # noqa: E402

UNITS = 10**8
BALANCE = 1_000_000


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0


def client(port, accounts, offset, until, out, op):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = json.dumps({"amount": "0.00000001", "to_address": "NBench"})
    statuses, latencies, i = {}, [], offset
    while time.time() < until:
        account = accounts[i % len(accounts)]
        i += 1
        start = time.perf_counter()
        if op == "get":
            conn.request("GET", f"/accounts/{account}/gasbank", headers=headers)
        else:
            conn.request("POST", f"/accounts/{account}/gasbank/withdraw", body, headers)
        res = conn.getresponse()
        res.read()
        latencies.append(time.perf_counter() - start)
        statuses[res.status] = statuses.get(res.status, 0) + 1
    conn.close()
    out.append((statuses, latencies))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--op", choices=["withdraw", "get"], default="withdraw")
    args = ap.parse_args()
    name = "bench_gas_" + uuid.uuid4().hex[:8]
    psql(ADMIN, f"CREATE DATABASE {name}")
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    port = free_port()
    env = dict(os.environ, API_TOKENS=TOKEN, LISTEN_ADDR=f"127.0.0.1:{port}",
               DATABASE_URL=url, SECRET_ENCRYPTION_KEY=KEY,
               LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "error"),
               DATABASE_MAX_CONNECTIONS="20", MAX_PENDING_WITHDRAWALS_PER_ACCOUNT="0")
    server = subprocess.Popen([os.environ.get("APPSERVER", "target/release/appserver")], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        return measure(args, url, base, port)
    finally:
        stop([server])
        psql(ADMIN, f"DROP DATABASE {name} WITH (FORCE)")


def measure(args, url, base, port):
    accounts = []
    for n in range(args.accounts):
        account = call(base, "POST", "/accounts", {"owner": f"bench-{n}"})["id"]
        call(base, "POST", f"/accounts/{account}/gasbank", {})
        call(base, "POST", f"/accounts/{account}/gasbank/deposit",
             {"amount": str(BALANCE), "tx_id": f"seed-{account}"})
        accounts.append(account)
    out, threads = [], []
    start = time.time()
    until = start + args.seconds
    for c in range(args.clients):
        t = threading.Thread(target=client, args=(port, accounts, c, until, out, args.op))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    elapsed = time.time() - start
    statuses, latencies = {}, []
    for s, l in out:
        latencies += l
        for k, v in s.items():
            statuses[k] = statuses.get(k, 0) + v
    created = statuses.get(201 if args.op == "withdraw" else 200, 0)
    # Consistency, from the database: balances intact, one pending row per 201.
    bad = int(psql(url, f"""
        SELECT count(*) FROM app_gas_accounts g
        WHERE g.balance <> {BALANCE * UNITS} OR g.available + g.pending <> g.balance
           OR g.pending <> (SELECT coalesce(sum(amount), 0) FROM app_gas_transactions t
                            WHERE t.gas_account_id = g.id AND t.status = 'pending')"""))
    rows = int(psql(url, "SELECT count(*) FROM app_gas_transactions WHERE type = 'withdrawal'"))
    ms = lambda v: round(v * 1000, 1)
    print(json.dumps({
        "op": args.op, "accounts": args.accounts, "clients": args.clients,
        "seconds": args.seconds, "statuses": statuses,
        "per_s": round(created / elapsed, 1),
        "latency_p50_ms": ms(percentile(latencies, 0.5)),
        "latency_p99_ms": ms(percentile(latencies, 0.99)),
        "latency_max_ms": ms(max(latencies) if latencies else 0),
        "withdrawal_rows": rows, "inconsistent_accounts": bad,
    }))
    if args.op == "get":
        return 0 if bad == 0 and rows == 0 and set(statuses) == {200} else 1
    return 0 if bad == 0 and rows == created and set(statuses) == {201} else 1


if __name__ == "__main__":
    raise SystemExit(main())
