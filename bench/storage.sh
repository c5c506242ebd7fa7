#!/usr/bin/env bash
# Storage accounts side by side with redis-server's local persistence, in one run:
# - an RDB snapshot of the dataset streamed into Azurite and into the S3 server (moto) vs
#   redis-server's SAVE to local disk;
# - a node with an empty disk restoring from each store vs redis-server loading its dump;
# - SET throughput with AOF everysec shipping segments to Azurite vs redis-server with AOF
#   everysec, and with `aof-durability store` (replies wait for the segment in the store).
# Prints cacheplane/redis ratios. Usage: bench/storage.sh [rounds]
# Environment: KEYS (dataset, default 5000000), N_SET (requests per SET run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
KEYS=${KEYS:-5000000}
N_SET=${N_SET:-300000}
# Store durability waits for a round trip to the store per write batch: fewer requests.
N_STORE=${N_STORE:-20000}

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap cleanup EXIT
start_object_stores

set_rps() { # port pipeline [requests]
  $PIN_CLIENT redis-benchmark -p "$1" -c 50 -P "$2" -n "${3:-$N_SET}" -r 100000 -t set --csv 2>/dev/null | tail -1 | tr -d '"' | cut -d, -f2
}
: >"$WORK/results.csv"

for round in $(seq "$ROUNDS"); do
  # redis-server: SAVE and load on local disk, AOF everysec.
  dir="$WORK/redis-$round"
  port=$(start redis "$dir")
  redis-cli -p "$port" debug populate "$KEYS" >/dev/null
  t0=$(now_ms); redis-cli -p "$port" save >/dev/null; t1=$(now_ms)
  record "$round" "snapshot ms" redis $((t1 - t0))
  stop "$port"
  t0=$(now_ms); port=$(start redis "$dir"); t1=$(now_ms)
  record "$round" "restore ms" redis $((t1 - t0))
  stop "$port"; rm -rf "$dir"
  port=$(start redis "$WORK/redis-aof-$round" --appendonly yes --appendfsync everysec)
  for P in 1 16; do record "$round" "SET ops/s AOF everysec -P $P" redis "$(set_rps "$port" "$P")"; done
  stop "$port"; rm -rf "$WORK/redis-aof-$round"

  for store in azurite s3; do
    if [ $store = azurite ]; then conn=$CACHEPLANE_TEST_AZURITE; else conn=$CACHEPLANE_TEST_S3; fi
    prefix="bench/$round-$store-$$"
    flags=(--rdb-backup-enabled yes --rdb-backup-frequency 1440 --rdb-storage-connection-string "$conn" --storage-prefix "$prefix")
    dir="$WORK/node-$round-$store"
    port=$(start node "$dir" "${flags[@]}")
    redis-cli -p "$port" debug populate "$KEYS" >/dev/null
    t0=$(now_ms)
    key=$(redis-cli -p "$port" cacheplane backup)
    until [ "$(info_field "$port" rdb_last_backup_key)" = "$key" ]; do
      [ "$(info_field "$port" rdb_last_backup_status)" = err ] && { echo "backup to $store failed" >&2; exit 1; }
      sleep 0.01
    done
    t1=$(now_ms)
    record "$round" "snapshot ms" "$store" $((t1 - t0))
    stop "$port"; rm -rf "$dir"
    t0=$(now_ms); port=$(start node "$dir" "${flags[@]}"); t1=$(now_ms)
    [ "$(redis-cli -p "$port" dbsize)" = "$KEYS" ] || { echo "restore from $store incomplete" >&2; exit 1; }
    record "$round" "restore ms" "$store" $((t1 - t0))
    stop "$port"; rm -rf "$dir"
  done

  for mode in local store; do
    dir="$WORK/node-aof-$round-$mode"
    port=$(start node "$dir" --appendonly yes --appendfsync everysec --aof-durability "$mode" \
      --aof-storage-connection-string-0 "$CACHEPLANE_TEST_AZURITE" --storage-prefix "bench/aof-$round-$mode-$$")
    n=$N_SET; [ "$mode" = store ] && n=$N_STORE
    for P in 1 16; do record "$round" "SET ops/s AOF everysec -P $P" "azurite-$mode" "$(set_rps "$port" "$P" "$n")"; done
    stop "$port"; rm -rf "$dir"
  done
  echo "round $round/$ROUNDS done" >&2
done

python3 - "$WORK/results.csv" "$ROUNDS" "$KEYS" <<'PY'
import csv, statistics, sys
path, rounds, keys = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = {}
for rnd, metric, who, value in csv.reader(open(path)):
    data.setdefault(metric, {}).setdefault(who, {})[rnd] = float(value)
def ratio(metric, who):
    r, n = data[metric]["redis"], data[metric][who]
    return statistics.median([n[k] / r[k] for k in r if k in n and r[k] > 0])
print(f"| {keys:,} keys | redis-server, local disk (median) | cacheplane (median) | ratio (median of per-round ratios) |")
print("|---|---:|---:|---:|")
rows = [
    ("snapshot ms", "azurite", "RDB snapshot ms: SAVE vs streamed into Azurite"),
    ("snapshot ms", "s3", "RDB snapshot ms: SAVE vs streamed into S3 (moto)"),
    ("restore ms", "azurite", "start to PONG: load dump vs restore from Azurite"),
    ("restore ms", "s3", "start to PONG: load dump vs restore from S3 (moto)"),
    ("SET ops/s AOF everysec -P 1", "azurite-local", "SET ops/s, AOF everysec, shipping to Azurite, -P 1"),
    ("SET ops/s AOF everysec -P 16", "azurite-local", "SET ops/s, AOF everysec, shipping to Azurite, -P 16"),
    ("SET ops/s AOF everysec -P 1", "azurite-store", "SET ops/s, aof-durability store (Azurite), -P 1"),
    ("SET ops/s AOF everysec -P 16", "azurite-store", "SET ops/s, aof-durability store (Azurite), -P 16"),
]
for metric, who, label in rows:
    r, n = data[metric]["redis"], data[metric][who]
    print(f"| {label} | {statistics.median(r.values()):,.0f} | {statistics.median(n.values()):,.0f} | {ratio(metric, who):.2f} |")
print()
print(f"rounds: {rounds}; goals: snapshot <= 1.0, restore <= 1.5, SET shipping to Azurite >= 0.9 (store durability: reported)")
PY
