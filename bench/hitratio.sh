#!/usr/bin/env bash
# Eviction side by side (issue #12): redis-server 7.0 vs a cacheplane node with the same
# maxmemory and policy, under a read-through load that redis-benchmark cannot make:
# cacheplane-loadgen (crates/loadgen) GETs keys of Zipf(0.99) popularity over a key space
# 10x larger than what fits, and SETs each key that missed. For allkeys-lru, allkeys-lfu
# and volatile-lru (keys SET with a TTL), alternating who goes first, it prints the hit
# ratios (difference in points) and the throughput ratio of the medians (higher is better).
#
# maxmemory is redis-server's used_memory once it holds FIT_PERCENT of the keys, measured
# first by a fill of that many keys with no maxmemory; the same fill on both servers
# (values SET with and without a TTL) gives the non-evicting used_memory per key.
# redis-server counts its clients' buffers against maxmemory too: with 50 pipelining
# connections about 1.3 MB of it, so it holds some 94,000 of the 100,000 keys.
#
# Usage: bench/hitratio.sh [rounds]
# Environment: ROUNDS (default 3; the argument wins), KEYS (key space, 1,000,000),
# FIT_PERCENT (10), VALUE_BYTES (100), ZIPF (0.99), CONNECTIONS (50), PIPELINE (16),
# WARMUP (operations before each measured phase, default KEYS), REQUESTS (measured
# operations, 2,000,000), POLICIES, BIN (a cacheplane binary to use instead of building one).
set -euo pipefail
# A failure inside $(...) (a load generator that stops) stops the script too.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROUNDS=${1:-${ROUNDS:-3}}
KEYS=${KEYS:-1000000}
FIT_PERCENT=${FIT_PERCENT:-10}
VALUE_BYTES=${VALUE_BYTES:-100}
ZIPF=${ZIPF:-0.99}
CONNECTIONS=${CONNECTIONS:-50}
PIPELINE=${PIPELINE:-16}
WARMUP=${WARMUP:-$KEYS}
REQUESTS=${REQUESTS:-2000000}
POLICIES=${POLICIES:-allkeys-lru allkeys-lfu volatile-lru}
# volatile-* policies evict only keys with a TTL; one far beyond the run, so that none
# expires and only eviction removes keys.
TTL_SECS=86400
FIT_KEYS=$((KEYS * FIT_PERCENT / 100))

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap 'stop_all; rm -rf "$WORK"' EXIT
need_loadgen

# loadgen <port> <flags...>: one cacheplane-loadgen run on the client core; prints its
# summary line.
loadgen() {
  local port=$1; shift
  $PIN_CLIENT "$LOADGEN" --port "$port" --value-bytes "$VALUE_BYTES" \
    --zipf "$ZIPF" --connections "$CONNECTIONS" --pipeline "$PIPELINE" "$@"
}
field() { tr ' ' '\n' <<<"$1" | awk -F= -v f="$2" '$1==f{print $2}'; } # summary name

# fill_bytes <redis|node> <flags...>: a fresh server with no maxmemory filled with FIT_KEYS
# keys; prints its used_memory (what eviction weighs) and allocator_allocated (what the
# allocator holds: the node counts its own memory, not the process's) before and after.
fill_bytes() {
  local who=$1; shift
  local port used0 used1 alloc0 alloc1
  port=$(start "$who" "$WORK/fill-$who")
  sleep 0.25
  used0=$(info_field "$port" used_memory); alloc0=$(info_field "$port" allocator_allocated)
  loadgen "$port" --mode fill --keys "$FIT_KEYS" "$@" >/dev/null
  # redis-server refreshes allocator_allocated in its cron, every 100 ms.
  sleep 0.25
  used1=$(info_field "$port" used_memory); alloc1=$(info_field "$port" allocator_allocated)
  stop "$port"
  echo "$used0 $used1 $alloc0 $alloc1"
}

# The non-evicting fill, which also sizes maxmemory: what redis-server needs for FIT_KEYS.
: >"$WORK/memory.csv"
MAXMEMORY=
for who in redis node; do
  for ttl in none ex; do
    flags=(); [ $ttl = ex ] && flags=(--ttl $TTL_SECS)
    bytes=$(fill_bytes $who "${flags[@]}")
    read -r used0 used1 alloc0 alloc1 <<<"$bytes"
    echo "$ttl,$who,$(( (used1 - used0) / FIT_KEYS )),$(( (alloc1 - alloc0) / FIT_KEYS ))" >>"$WORK/memory.csv"
    [ $who = redis ] && [ $ttl = none ] && MAXMEMORY=$used1
  done
done
echo "maxmemory $MAXMEMORY bytes: redis-server's used_memory holding $FIT_KEYS keys of $VALUE_BYTES bytes ($FIT_PERCENT% of $KEYS)" >&2

: >"$WORK/results.csv"
: >"$WORK/hits.csv"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis node"; else order="node redis"; fi
  for policy in $POLICIES; do
    flags=(); [[ $policy = volatile-* ]] && flags=(--ttl $TTL_SECS)
    for who in $order; do
      # A fresh server per run: every policy starts from an empty cache.
      port=$(start "$who" "$WORK/$who-$policy" --maxmemory "$MAXMEMORY" --maxmemory-policy "$policy")
      summary=$(loadgen "$port" --keys "$KEYS" --warmup "$WARMUP" --requests "$REQUESTS" --seed "$round" "${flags[@]}")
      [ "$(field "$summary" errors)" = 0 ] || echo "$who $policy: $(field "$summary" errors) error replies" >&2
      record "$round" "$policy -P$PIPELINE" "$who" "$(field "$summary" ops_per_sec)"
      # Keys held and used_memory after the run (the load generator's connections closed).
      echo "$round,$policy,$who,$(field "$summary" hit_ratio),$(redis-cli -p "$port" dbsize),$(info_field "$port" used_memory),$(info_field "$port" evicted_keys)" >>"$WORK/hits.csv"
      stop "$port"
    done
  done
  echo "round $round/$ROUNDS done" >&2
done

echo "read-through, $KEYS keys of Zipf($ZIPF) popularity, $VALUE_BYTES-byte values, maxmemory $MAXMEMORY; $CONNECTIONS connections, pipeline $PIPELINE, $WARMUP operations warm-up, $REQUESTS measured"
echo
ratio_table "$ROUNDS"
echo
python3 - "$WORK/hits.csv" "$WORK/memory.csv" "$ROUNDS" "$FIT_KEYS" <<'PY'
import csv, statistics, sys
hits_path, memory_path, rounds, fit_keys = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
by = {}
for rnd, policy, who, ratio, keys, used, evicted in csv.reader(open(hits_path)):
    by.setdefault(policy, {}).setdefault(who, []).append(
        (float(ratio), int(keys), int(used), int(evicted or 0)))
med = lambda rows, i: statistics.median(r[i] for r in rows)
held = lambda rows: f"{med(rows, 1):,.0f} ({med(rows, 2) / 1e6:.1f} MB)"
print(f"| policy ({rounds} rounds, medians) | redis-server hit % | cacheplane hit % | difference (points) "
      f"| redis-server keys held (used_memory) | cacheplane keys held (used_memory) | redis-server evicted | cacheplane evicted |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for policy, rows in by.items():
    r, n = rows["redis"], rows["node"]
    rh, nh = 100 * med(r, 0), 100 * med(n, 0)
    print(f"| {policy} | {rh:.2f} | {nh:.2f} | {nh - rh:+.2f} | {held(r)} | {held(n)} "
          f"| {med(r, 3):,.0f} | {med(n, 3):,.0f} |")
print()
mem = {(ttl, who): (int(u), int(a)) for ttl, who, u, a in csv.reader(open(memory_path))}
print(f"| no maxmemory, {fit_keys:,} keys | redis-server bytes/key | cacheplane bytes/key | difference |")
print("|---|---:|---:|---:|")
for i, figure in enumerate(("used_memory", "allocator_allocated")):
    for ttl, label in (("none", "SET"), ("ex", "SET ... EX")):
        r, n = mem[(ttl, "redis")][i], mem[(ttl, "node")][i]
        print(f"| {figure} per key, {label} | {r} | {n} | {n - r:+d} |")
PY
