#!/usr/bin/env bash
# Recovery from a lost machine, side by side with redis-server's local load, in one run:
# a cache with AOF persistence to Azurite, and one to the S3 server (moto), each holding the
# same KEYS keys, goes through a `machineLoss` fault drill through the management API; the
# drill reports its recovery time and what it restored (bytes, seconds of download and of
# replay). redis-server, with the same writes in its append-only file, restarts from its
# local disk. Prints the restore throughputs and the ratios.
# Usage: bench/drills.sh [rounds]. Environment: KEYS (default 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
KEYS=${KEYS:-1000000}
TOKEN=bench-token

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap cleanup EXIT
eval "$(OBJECT_STORES_RUN="$WORK/object-stores" scripts/object-stores.sh start)"

# The same writes for both: KEYS SETs as RESP, piped in.
python3 - "$KEYS" >"$WORK/writes.resp" <<'EOF'
import sys
out = sys.stdout.buffer
for i in range(int(sys.argv[1])):
    k, v = b"key:%d" % i, b"value:%010d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
EOF

start_serve

: >"$WORK/results.csv"
for round in $(seq "$ROUNDS"); do
  # redis-server: the writes into its AOF, then a restart from the local disk.
  dir="$WORK/redis-$round"
  port=$(start redis "$dir" --appendonly yes --appendfsync everysec)
  redis-cli -p "$port" --pipe <"$WORK/writes.resp" >/dev/null
  aof_bytes=$(du -sb "$dir/appendonlydir" | cut -f1)
  stop "$port"
  t0=$(now_ms); port=$(start redis "$dir" --appendonly yes); t1=$(now_ms)
  [ "$(redis-cli -p "$port" dbsize)" = "$KEYS" ] || { echo "redis-server came back without its keys" >&2; exit 1; }
  record "$round" "restore s" redis "$(echo "scale=3; ($t1 - $t0) / 1000" | bc)"
  record "$round" "restore MB/s" redis "$(echo "scale=1; $aof_bytes / 1000 / ($t1 - $t0)" | bc)"
  stop "$port"; rm -rf "$dir"

  for store in azurite s3; do
    if [ $store = azurite ]; then conn=$CACHEPLANE_TEST_AZURITE; else conn=$CACHEPLANE_TEST_S3; fi
    name="aof-$store-$round"
    body=$(python3 -c 'import json,sys; print(json.dumps({"location": "westeurope", "properties": {"sku": {"name": "Premium", "family": "P", "capacity": 4}, "enableNonSslPort": True, "redisConfiguration": {"aof-backup-enabled": "true", "aof-storage-connection-string-0": sys.argv[1], "authnotrequired": "true"}}}))' "$conn")
    created=$(api PUT "$name" "$body")
    port=$(echo "$created" | json 'd["properties"]["port"]')
    wait_cache "$name"
    redis-cli -p "$port" --pipe <"$WORK/writes.resp" >/dev/null
    # Everything written is in the account before the machine goes.
    until redis-cli -p "$port" info storage | grep -q 'aof_target_0:.*backlog_bytes=0,'; do sleep 0.1; done
    result=$(drill "$name" '{"kind": "machineLoss", "durationSeconds": 1, "probe": {"writesPerSecond": 200}}')
    echo "$store: $(echo "$result" | json 'd["properties"]["restoredFrom"]'), lost $(echo "$result" | json 'd["properties"]["probe"]["lost"]') of $(echo "$result" | json 'd["properties"]["probe"]["acknowledged"]'), within prediction: $(echo "$result" | json 'd["properties"]["withinPrediction"]')"
    keys=$(echo "$result" | json 'd["properties"]["restoredFrom"]["keys"]')
    [ "$keys" -ge "$KEYS" ] || { echo "the $store restore came back with $keys keys" >&2; exit 1; }
    record "$round" "restore s" "$store" "$(echo "$result" | json 'round(d["properties"]["recoverySeconds"], 3)')"
    record "$round" "restore MB/s" "$store" "$(echo "$result" | json 'round(d["properties"]["restoredFrom"]["bytes"] / 1e6 / (d["properties"]["restoredFrom"]["downloadSeconds"] + d["properties"]["restoredFrom"]["replaySeconds"]), 1)')"
    record "$round" "download s" "$store" "$(echo "$result" | json 'round(d["properties"]["restoredFrom"]["downloadSeconds"], 3)')"
    record "$round" "replay s" "$store" "$(echo "$result" | json 'round(d["properties"]["restoredFrom"]["replaySeconds"], 3)')"
    api DELETE "$name" >/dev/null || true
  done
done

echo
echo "machineLoss recovery of $KEYS keys (AOF), medians of $ROUNDS round(s), $(nproc) cores, $(date -u +%F)"
python3 - "$WORK/results.csv" <<'EOF'
import csv, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for r in csv.reader(open(sys.argv[1])):
    rows[(r[1], r[2])].append(float(r[3]))
med = {k: statistics.median(v) for k, v in rows.items()}
print(f"{'':16}{'redis local':>12}{'azurite':>10}{'s3':>10}{'az/redis':>10}{'s3/redis':>10}")
for metric in ["restore s", "restore MB/s"]:
    r, a, s = (med.get((metric, w)) for w in ("redis", "azurite", "s3"))
    ratio = lambda x: f"{x / r:.2f}" if x and r else "-"
    print(f"{metric:16}{r:>12}{a:>10}{s:>10}{ratio(a):>10}{ratio(s):>10}")
for metric in ["download s", "replay s"]:
    a, s = (med.get((metric, w)) for w in ("azurite", "s3"))
    print(f"{metric:16}{'':>12}{a:>10}{s:>10}")
EOF
