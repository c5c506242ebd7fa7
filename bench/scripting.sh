#!/usr/bin/env bash
# Scripting side by side: redis-server 7.0 vs a cacheplane node, alternating rounds,
# redis-benchmark -c 50 running EVALSHA of a small rate limiter (INCR, EXPIRE on the first
# hit) over random keys, unpipelined and at -P 16, and FCALL of the same as a function.
# Prints node/redis ratios of the medians (higher is better).
# Usage: bench/scripting.sh [rounds]   Environment: N (requests per test).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${N:-200000}
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap 'stop_all; rm -rf "$WORK"' EXIT

LIMITER="local n = redis.call('incr', KEYS[1]) if n == 1 then redis.call('expire', KEYS[1], 60) end return n"
LIBRARY="#!lua name=bench
redis.register_function('limit', function(keys) $LIMITER end)"
RPORT=$(start redis "$WORK/redis")
NPORT=$(start node "$WORK/node")
for port in "$RPORT" "$NPORT"; do
  SHA=$(redis-cli -p "$port" script load "$LIMITER")
  redis-cli -p "$port" function load "${LIBRARY//KEYS/keys}" >/dev/null
done

run() { # port pipeline command...
  local port=$1 pipeline=$2; shift 2
  redis-cli -p "$port" flushall >/dev/null
  $PIN_CLIENT redis-benchmark -p "$port" -c 50 -P "$pipeline" -n "$N" -r 100000 --csv "$@" 2>/dev/null \
    | tail -n +2 | tr -d '"' | cut -d, -f2
}

: >"$WORK/results.csv"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis node"; else order="node redis"; fi
  for test in evalsha-P1 evalsha-P16 fcall-P1; do
    for who in $order; do
      port=$RPORT; [ "$who" = node ] && port=$NPORT
      case $test in
        evalsha-P1) rps=$(run "$port" 1 evalsha "$SHA" 1 "rl:__rand_int__") ;;
        evalsha-P16) rps=$(run "$port" 16 evalsha "$SHA" 1 "rl:__rand_int__") ;;
        fcall-P1) rps=$(run "$port" 1 fcall limit 1 "rl:__rand_int__") ;;
      esac
      record "$round" "$test" "$who" "$rps"
    done
  done
  echo "round $round/$ROUNDS done" >&2
done

ratio_table "$ROUNDS"
