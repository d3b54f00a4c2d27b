#!/usr/bin/env bash
# Executions per second through `POST /accounts/{id}/functions/{fid}/execute` on the real
# release binary, memory store or PostgreSQL, driven by wrk over loopback.
#
#   benches/load/execute.sh memory            [seconds] [connections]
#   benches/load/execute.sh postgres <dsn>    [seconds] [connections]
#
# Needs `cargo build --release` and wrk (Debian package `wrk`); APPSERVER=<path> runs another
# build (a baseline). Prints wrk's summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:?memory or postgres}
if [ "$mode" = postgres ]; then dsn=${2:?dsn}; shift 2; else shift 1; fi
seconds=${1:-10}
connections=${2:-8}
token=bench-token-0123456789abcdef
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env_args=(API_TOKENS=$token LISTEN_ADDR=127.0.0.1:$port LOG_LEVEL=error)
if [ "$mode" = postgres ]; then
  env_args+=(DATABASE_URL=$dsn SECRET_ENCRYPTION_KEY=base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=)
fi
env "${env_args[@]}" "${APPSERVER:-target/release/appserver}" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
base=http://127.0.0.1:$port
for _ in $(seq 1 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
auth="Authorization: Bearer $token"
account=$(curl -sf -H "$auth" -H 'Content-Type: application/json' -d '{"owner":"bench"}' "$base/accounts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
function=$(curl -sf -H "$auth" -H 'Content-Type: application/json' \
  -d '{"name":"sum","source":"(p) => ({sum: p.a + p.b})"}' \
  "$base/accounts/$account/functions" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
script=$(mktemp --suffix=.lua)
cat > "$script" <<LUA
wrk.method = "POST"
wrk.body = '{"a": 20, "b": 22}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
# Each account may hold (pool + queue) / 2 runs: stay within it so every call runs.
wrk -t 2 -c "$connections" -d "${seconds}s" -s "$script" "$base/accounts/$account/functions/$function/execute"
rm -f "$script"
