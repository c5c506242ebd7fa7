#!/usr/bin/env bash
# Side-by-side throughput and memory: redis-server 7.0 vs a cacheplane node, same flags,
# same machine, alternating rounds; prints node/redis ratios (higher is better for ops,
# lower is better for memory). Usage: bench/vs-redis.sh [rounds]
# Environment: N_PIPELINED (requests per pipelined test), N_PLAIN, KEYS_FOR_MEMORY.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
N_PIPELINED=${N_PIPELINED:-1000000}
N_PLAIN=${N_PLAIN:-200000}
KEYS_FOR_MEMORY=${KEYS_FOR_MEMORY:-1000000}
TESTS=set,get,incr,lpush,hset,zadd

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
# BIN: a cacheplane binary to measure instead of building one (into CARGO_TARGET_DIR).
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=${CARGO_TARGET_DIR:-target}/release/cacheplane
fi
WORK=$(mktemp -d)
trap 'redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1 || true; redis-cli -p $NPORT shutdown nosave >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "port $1 never ready" >&2; exit 1; }

COMMON=(--bind 127.0.0.1 --save "" --appendonly no --enable-debug-command yes --dir "$WORK")
RPORT=$(free_port); NPORT=$(free_port)
# Both servers are single-threaded: pin them to core 1 and the load generator to core 0, so
# the scheduler moves neither around mid-run. (Set PIN= to disable.)
PIN_SERVER=${PIN-taskset -c 1}
PIN_CLIENT=${PIN-taskset -c 0}
$PIN_SERVER redis-server --port "$RPORT" "${COMMON[@]}" --daemonize no >"$WORK/redis.log" 2>&1 &
$PIN_SERVER "$BIN" node --port "$NPORT" "${COMMON[@]}" --loglevel warning >"$WORK/node.log" 2>&1 &
wait_ready "$RPORT"; wait_ready "$NPORT"

# One redis-benchmark run of one test; prints "test,rps".
run() { # port pipeline n test
  redis-cli -p "$1" flushall >/dev/null
  $PIN_CLIENT redis-benchmark -p "$1" -c 50 -P "$2" -n "$3" -r 100000 -t "$4" --csv 2>/dev/null \
    | tail -n +2 | tr -d '"' | cut -d, -f1,2
}

: >"$WORK/results.csv"
for round in $(seq "$ROUNDS"); do
  for mode in pipelined plain; do
    if [ $mode = pipelined ]; then P=16; N=$N_PIPELINED; else P=1; N=$N_PLAIN; fi
    for test in ${TESTS//,/ }; do
      # Each test runs on both servers back to back, alternating who goes first, so the
      # pair sees the same machine conditions.
      if [ $((round % 2)) = 1 ]; then order="redis node"; else order="node redis"; fi
      for who in $order; do
        port=$RPORT; [ $who = node ] && port=$NPORT
        run "$port" "$P" "$N" "$test" | sed "s/^/$round,$mode,$who,/" >>"$WORK/results.csv"
      done
    done
  done
  echo "round $round/$ROUNDS done" >&2
done

# What the allocator holds (the node's used_memory is its own count of its data; both
# servers report jemalloc's figure as allocator_allocated).
used_memory() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '/^allocator_allocated:/{print $2}'; }
mem_per_key() { # port
  redis-cli -p "$1" flushall >/dev/null
  local before after
  # redis-server refreshes allocator_allocated in its cron, every 100 ms.
  sleep 0.25
  before=$(used_memory "$1")
  redis-cli -p "$1" debug populate "$KEYS_FOR_MEMORY" >/dev/null
  sleep 0.25
  after=$(used_memory "$1")
  echo $(( (after - before) / KEYS_FOR_MEMORY ))
}
RMEM=$(mem_per_key "$RPORT"); NMEM=$(mem_per_key "$NPORT")

python3 - "$WORK/results.csv" "$RMEM" "$NMEM" "$ROUNDS" "$KEYS_FOR_MEMORY" <<'PY'
import csv, statistics, sys
path, rmem, nmem, rounds, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rps = {}
for rnd, mode, who, test, value in csv.reader(open(path)):
    rps.setdefault((mode, test), {}).setdefault(who, {})[rnd] = float(value)
print(f"| test | redis-server ops/s (median) | cacheplane ops/s (median) | ratio (median of per-round ratios) |")
print(f"|---|---:|---:|---:|")
worst = None
for (mode, test), by in sorted(rps.items()):
    r, n = by["redis"], by["node"]
    ratios = [n[k] / r[k] for k in r if k in n]
    ratio = statistics.median(ratios)
    worst = ratio if worst is None else min(worst, ratio)
    label = f"{test.split()[0]} {'-P 16' if mode == 'pipelined' else 'no pipeline'}"
    print(f"| {label} | {statistics.median(r.values()):,.0f} | {statistics.median(n.values()):,.0f} | {ratio:.2f} |")
print()
print(f"| memory after DEBUG POPULATE {int(keys):,} | redis-server | cacheplane | ratio |")
print(f"|---|---:|---:|---:|")
print(f"| allocator_allocated bytes per key | {rmem} | {nmem} | {nmem / rmem:.2f} |")
print()
print(f"rounds: {rounds}; worst median throughput ratio {worst:.2f} (acceptance >= 0.90); memory ratio {nmem / rmem:.2f} (acceptance <= 1.50)")
PY
