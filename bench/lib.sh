# Shared by the benchmark scripts (sourced): starting and stopping servers side by side on
# free ports, pinned to one core with the load generator on the other, and recording
# results. Expects WORK (a scratch dir) to be set. BIN: a cacheplane binary to measure;
# unset, the release one is built (into CARGO_TARGET_DIR, default target/).

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet -p cacheplane
  BIN=${CARGO_TARGET_DIR:-target}/release/cacheplane
fi
# The load generator for what redis-benchmark cannot do, or not cheaply enough; a script
# that uses it calls need_loadgen first.
LOADGEN=${CARGO_TARGET_DIR:-target}/release/cacheplane-loadgen
need_loadgen() { cargo build --release --quiet -p loadgen; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Ready means answering PONG: a server still loading answers -LOADING.
wait_ready() { for _ in $(seq 40000); do [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0; sleep 0.005; done; echo "port $1 never ready" >&2; exit 1; }
now_ms() { date +%s%3N; }
# Both servers are single-threaded: pin them to core 1 and the load generator to core 0.
# (Set PIN= to disable.)
PIN_SERVER=${PIN-taskset -c 1}
PIN_CLIENT=${PIN-taskset -c 0}

# start <redis|node> <dir> <extra flags...>: starts a server, prints its port.
start() {
  local who=$1 dir=$2; shift 2
  local port; port=$(free_port)
  mkdir -p "$dir"
  local flags=(--port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --enable-debug-command yes "$@")
  if [ "$who" = redis ]; then
    $PIN_SERVER redis-server "${flags[@]}" --daemonize no >>"$dir/log" 2>&1 &
  else
    $PIN_SERVER "$BIN" node "${flags[@]}" --loglevel warning >>"$dir/log" 2>&1 &
  fi
  # Called as $(start ...), in a subshell: the port list lives in a file, not a variable.
  echo "$port" >>"$WORK/ports"
  wait_ready "$port"
  echo "$port"
}
# stop <port>: shuts a server down and waits until its process is gone (freeing a large
# dataset takes seconds, which must not overlap the next measurement).
stop() {
  local pid; pid=$(info_field "$1" process_id 2>/dev/null || true)
  redis-cli -p "$1" shutdown nosave >/dev/null 2>&1 || true
  while redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.01; done
  if [ -n "$pid" ]; then while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done; fi
}
stop_all() {
  [ -f "$WORK/ports" ] || return 0
  while read -r p; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done <"$WORK/ports"
}
info_field() { redis-cli -p "$1" info everything | tr -d '\r' | awk -F: -v f="$2" '$1==f{print $2}'; }
# cpu_s <port>: the server process's CPU seconds so far (INFO cpu, user + system:
# redis-server reads getrusage, the node /proc/self/stat in 10 ms ticks, so keep tests
# to seconds of CPU). A benchmark whose client is the bottleneck compares the servers by
# work done per CPU second instead of by throughput alone.
cpu_s() { redis-cli -p "$1" info cpu | tr -d '\r' | awk -F: '$1=="used_cpu_user"||$1=="used_cpu_sys"{t+=$2} END{printf "%.6f", t}'; }
# per_cpu_s <port> <requests> <cpu_s before>: requests served per second of the server's CPU.
per_cpu_s() { python3 -c "print($2 / max($(cpu_s "$1") - $3, 1e-6))"; }
# loadgen_rps <port> <pipeline> <requests> [loadgen flags...] -- <command...>: requests per
# second of `cacheplane-loadgen --mode command` (50 connections) on the client core.
# Unpipelined, redis-benchmark spends as much CPU per request as either server, so its rate
# is its own; this client spends about half that, which leaves the server as the bound.
loadgen_rps() {
  local port=$1 pipeline=$2 requests=$3; shift 3
  $PIN_CLIENT "$LOADGEN" --mode command --port "$port" --connections 50 --pipeline "$pipeline" \
    --requests "$requests" "$@" | tr ' ' '\n' | awk -F= '$1=="requests_per_sec"{print $2}'
}
record() { echo "$1,$2,$3,$4" >>"$WORK/results.csv"; } # round,metric,who,value
# ratio_table <rounds>: the medians of each metric's rounds as a Markdown table, with the
# ratio cacheplane/redis (higher is better).
ratio_table() {
  python3 - "$WORK/results.csv" "$1" <<'PY'
import csv, statistics, sys
rows = {}
for rnd, metric, who, value in csv.reader(open(sys.argv[1])):
    rows.setdefault(metric, {}).setdefault(who, []).append(float(value))
print(f"| test (c=50, {sys.argv[2]} rounds) | redis-server ops/s | cacheplane ops/s | ratio cacheplane/redis |")
print("|---|---:|---:|---:|")
for metric, by in rows.items():
    r, n = statistics.median(by["redis"]), statistics.median(by["node"])
    print(f"| {metric} | {r:,.0f} | {n:,.0f} | {n / r:.2f} |")
PY
}
# Azurite and the S3 server for this run, under $WORK; stop_object_stores ends them. They
# stand in for remote services: pinned with the load generator, off the server core.
start_object_stores() {
  eval "$(OBJECT_STORES_RUN="$WORK/object-stores" scripts/object-stores.sh start)"
  if [ -n "$PIN_CLIENT" ]; then
    while read -r pid; do taskset -a -p -c 0 "$pid" >/dev/null; done <"$WORK/object-stores/pids"
  fi
}
stop_object_stores() { OBJECT_STORES_RUN="$WORK/object-stores" scripts/object-stores.sh stop; }
# cleanup, for `trap cleanup EXIT`: stops what the run started (servers, serve, the object
# stores) and removes $WORK.
SERVE_PID=
cleanup() {
  stop_all
  if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
  stop_object_stores
  rm -rf "$WORK"
}

# The management API for a run: start_serve starts `cacheplane serve` under $WORK with the
# token $TOKEN (SERVE_PID and api_port set; stop it with `kill $SERVE_PID`); api calls a
# cache's route, json reads a field from standard input, wait_op follows an operation.
API_VERSION=2024-11-01
start_serve() {
  api_port=$(free_port)
  "$BIN" serve --listen "127.0.0.1:$api_port" --data-dir "$WORK/serve" --token "$TOKEN" >"$WORK/serve.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 2000); do curl -s -o /dev/null "http://127.0.0.1:$api_port/openapi.json" && return 0; sleep 0.01; done
  echo "serve never answered" >&2; exit 1
}
api() { # method path [body]
  curl -sf -X "$1" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    "http://127.0.0.1:$api_port/subscriptions/bench/resourceGroups/rg/providers/Microsoft.Cache/redis/$2?api-version=$API_VERSION" \
    ${3:+-d "$3"}
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
wait_op() { # async-operation URL: waits until it ends, prints its status
  local status
  while :; do
    status=$(curl -sf -H "Authorization: Bearer $TOKEN" "$1" | json 'd["status"]')
    [ "$status" != InProgress ] && { echo "$status"; return; }
    sleep 0.2
  done
}
# wait_cache <name>: until the cache's provisioning succeeded.
wait_cache() {
  for _ in $(seq 3000); do [ "$(api GET "$1" | json 'd["properties"]["provisioningState"]')" = Succeeded ] && return 0; sleep 0.1; done
  echo "cache $1 never provisioned" >&2; exit 1
}
# drill <cache> <request body>: runs a fault drill to its end, prints its record (JSON).
drill() {
  local headers="$WORK/headers" started op
  started=$(curl -sf -D "$headers" -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    "http://127.0.0.1:$api_port/subscriptions/bench/resourceGroups/rg/providers/Microsoft.Cache/redis/$1/simulateFault?api-version=$API_VERSION" \
    -d "$2")
  op=$(grep -i '^azure-asyncoperation:' "$headers" | cut -d' ' -f2 | tr -d '\r')
  [ "$(wait_op "$op")" = Succeeded ] || { echo "the drill on $1 failed: $(api GET "$1/faultDrills")" >&2; exit 1; }
  api GET "$1/faultDrills/$(echo "$started" | json 'd["name"]')"
}
