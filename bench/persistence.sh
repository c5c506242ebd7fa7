#!/usr/bin/env bash
# Persistence side by side: redis-server 7.0 vs a cacheplane node, same flags, same core.
# Prints node/redis ratios for SAVE time and start-up load time of the same dataset
# (DEBUG POPULATE), SET throughput with appendfsync everysec and always, and GET p99
# latency while a BGSAVE runs vs idle. Usage: bench/persistence.sh [rounds]
# Environment: KEYS (dataset size, default 5000000), N_SET (requests per SET run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
KEYS=${KEYS:-5000000}
N_SET=${N_SET:-300000}

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap cleanup EXIT

bgsave_running() { redis-cli -p "$1" info persistence | tr -d '\r' | grep -q '^rdb_bgsave_in_progress:1'; }
: >"$WORK/results.csv"

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis node"; else order="node redis"; fi
  for who in $order; do
    dir="$WORK/$who-$round"
    port=$(start "$who" "$dir")
    redis-cli -p "$port" debug populate "$KEYS" >/dev/null
    t0=$(now_ms); redis-cli -p "$port" save >/dev/null; t1=$(now_ms)
    record "$round" "SAVE ms" "$who" $((t1 - t0))

    # GET p99 idle, then while a BGSAVE of the whole dataset runs.
    idle=$($PIN_CLIENT redis-benchmark -p "$port" -c 50 -n 200000 -r "$KEYS" -t get --csv 2>/dev/null | tail -1 | tr -d '"' | cut -d, -f7)
    redis-cli -p "$port" bgsave >/dev/null
    during=$($PIN_CLIENT redis-benchmark -p "$port" -c 50 -n 100000 -r "$KEYS" -t get --csv 2>/dev/null | tail -1 | tr -d '"' | cut -d, -f7)
    still=$(bgsave_running "$port" && echo yes || echo no)
    while bgsave_running "$port"; do sleep 0.05; done
    record "$round" "GET p99 ms idle" "$who" "$idle"
    record "$round" "GET p99 ms during BGSAVE" "$who" "$during"
    [ "$still" = yes ] || echo "note: $who finished BGSAVE before the GET run ended (round $round)" >&2
    stop "$port"

    t0=$(now_ms); port=$(start "$who" "$dir"); t1=$(now_ms)
    record "$round" "load ms (start to PONG)" "$who" $((t1 - t0))
    stop "$port"
    rm -rf "$dir"

    for policy in everysec always; do
      adir="$WORK/$who-$round-$policy"
      port=$(start "$who" "$adir" --appendonly yes --appendfsync "$policy")
      for P in 1 16; do
        rps=$($PIN_CLIENT redis-benchmark -p "$port" -c 50 -P "$P" -n "$N_SET" -r 100000 -t set --csv 2>/dev/null | tail -1 | tr -d '"' | cut -d, -f2)
        record "$round" "SET ops/s appendfsync $policy -P $P" "$who" "$rps"
      done
      stop "$port"
      rm -rf "$adir"
    done
  done
  echo "round $round/$ROUNDS done" >&2
done

python3 - "$WORK/results.csv" "$ROUNDS" "$KEYS" <<'PY'
import csv, statistics, sys
path, rounds, keys = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = {}
for rnd, metric, who, value in csv.reader(open(path)):
    data.setdefault(metric, {}).setdefault(who, {})[rnd] = float(value)
print(f"| {keys:,} keys (DEBUG POPULATE) | redis-server (median) | cacheplane (median) | ratio cacheplane/redis (median of per-round ratios) |")
print("|---|---:|---:|---:|")
order = ["SAVE ms", "load ms (start to PONG)", "SET ops/s appendfsync everysec -P 1", "SET ops/s appendfsync everysec -P 16",
         "SET ops/s appendfsync always -P 1", "SET ops/s appendfsync always -P 16", "GET p99 ms idle", "GET p99 ms during BGSAVE"]
for metric in order:
    r, n = data[metric]["redis"], data[metric]["node"]
    ratio = statistics.median([n[k] / r[k] for k in r if k in n and r[k] > 0])
    print(f"| {metric} | {statistics.median(r.values()):,.2f} | {statistics.median(n.values()):,.2f} | {ratio:.2f} |")
print()
for who, name in [("redis", "redis-server"), ("node", "cacheplane")]:
    idle = data["GET p99 ms idle"][who]
    during = data["GET p99 ms during BGSAVE"][who]
    ratio = statistics.median([during[k] / idle[k] for k in idle if idle[k] > 0])
    print(f"{name}: GET p99 during BGSAVE / idle = {ratio:.2f}" + (" (acceptance <= 2.0)" if who == "node" else ""))
print(f"rounds: {rounds}; acceptance: SAVE and load ratio <= 1.0, appendfsync SET ratios >= 0.9")
PY
