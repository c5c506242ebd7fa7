#!/usr/bin/env bash
# The newer data types side by side: redis-server 7.0 vs a cacheplane node, alternating
# rounds, redis-benchmark -c 50 unpipelined and at -P 16 running XADD (one stream per
# random key), XREAD (COUNT 10 from a stream of 1,000 entries), PFADD (random elements into
# one sketch, so it turns dense) and SETBIT (bit 4095 of random keys: redis-benchmark's
# random numbers are zero-padded, which Redis refuses as bit offsets).
# Unpipelined, each test runs twice: with redis-benchmark, whose one core is as busy as the
# server's (so its throughput moves by ±10 % from run to run around its own limit), and with
# cacheplane-loadgen's command mode, a client cheap enough to leave the server as the bound.
# Prints node/redis ratios of the medians (higher is better), of throughput and of requests
# served per second of the server's CPU.
# Usage: bench/datatypes.sh [rounds]   Environment: N (requests per test), PIPELINES
# (default "1 16").
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${N:-200000}
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap 'stop_all; rm -rf "$WORK"' EXIT
need_loadgen

RPORT=$(start redis "$WORK/redis")
NPORT=$(start node "$WORK/node")

# prepare <port>: the stream XREAD reads.
prepare() {
  redis-cli -p "$1" flushall >/dev/null
  for _ in $(seq 10); do
    printf 'XADD feed * field value\n%.0s' $(seq 100)
  done | redis-cli -p "$1" >/dev/null
}

run() { # driver port pipeline command...
  local driver=$1 port=$2 pipeline=$3; shift 3
  if [ "$driver" = loadgen ]; then
    loadgen_rps "$port" "$pipeline" "$N" --keys 1000000 -- "$@"
    return
  fi
  $PIN_CLIENT redis-benchmark -p "$port" -c 50 -P "$pipeline" -n "$N" -r 1000000 --csv "$@" 2>/dev/null \
    | tail -n +2 | tr -d '"' | cut -d, -f2
}

: >"$WORK/results.csv"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis node"; else order="node redis"; fi
  for pipeline in ${PIPELINES:-1 16}; do
    drivers=redis-benchmark; [ "$pipeline" = 1 ] && drivers="redis-benchmark loadgen"
    for driver in $drivers; do
      for test in xadd xread pfadd setbit; do
        for who in $order; do
          port=$RPORT; [ "$who" = node ] && port=$NPORT
          prepare "$port"
          cpu0=$(cpu_s "$port")
          case $test in
            xadd) rps=$(run "$driver" "$port" "$pipeline" xadd "s:__rand_int__" "*" field value) ;;
            xread) rps=$(run "$driver" "$port" "$pipeline" xread count 10 streams feed 0) ;;
            pfadd) rps=$(run "$driver" "$port" "$pipeline" pfadd visitors "__rand_int__") ;;
            setbit) rps=$(run "$driver" "$port" "$pipeline" setbit "bits:__rand_int__" 4095 1) ;;
          esac
          name="$test-P$pipeline"; [ "$driver" = loadgen ] && name="$name (loadgen)"
          record "$round" "$name" "$who" "$rps"
          record "$round" "$name per server CPU s" "$who" "$(per_cpu_s "$port" "$N" "$cpu0")"
        done
      done
    done
  done
  echo "round $round/$ROUNDS done" >&2
done

ratio_table "$ROUNDS"
