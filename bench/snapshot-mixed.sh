#!/usr/bin/env bash
# SAVE and load of a mixed dataset side by side: redis-server 7.0 vs a cacheplane node,
# same flags, same core. Where bench/persistence.sh saves DEBUG POPULATE's strings, this
# dataset is what applications keep: per group of five keys a string, a small hash, a
# small sorted set, a small set of integers and a small list (what Redis writes as
# listpacks and intsets), plus a few large collections. Prints SAVE time, load time
# (start to PONG) and dump size with ratios cacheplane/redis (lower is better).
# Usage: bench/snapshot-mixed.sh [rounds]   Environment: KEYS (default 5000000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
KEYS=${KEYS:-5000000}

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap cleanup EXIT
: >"$WORK/results.csv"

echo "writing the dataset ($KEYS keys) as RESP..." >&2
python3 - "$KEYS" >"$WORK/data.resp" <<'PY'
import random, sys
random.seed(7)
out = sys.stdout.buffer
def cmd(*args):
    args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
groups = int(sys.argv[1]) // 5
r = random.randrange
for i in range(groups):
    cmd("SET", f"page:{i}", f"<html>{r(10**9)}</html>" * (1 + i % 4))
    h = ["HSET", f"user:{i}"]
    for f in ("name", "email", "plan", "visits", "last_seen", "country"):
        h += [f, f"{f}-{r(10**6)}"]
    cmd(*h)
    z = ["ZADD", f"board:{i}"]
    for _ in range(8):
        z += [r(1000), f"player-{r(10**6)}"]
    cmd(*z)
    cmd("SADD", f"tags:{i}", *[r(30000) for _ in range(8)])
    cmd("RPUSH", f"jobs:{i}", *[f"job-{r(10**6)}" for _ in range(8)])
for big in range(3):
    cmd("HSET", f"big:hash:{big}", *[x for j in range(10000) for x in (f"f{j}", f"v{r(10**6)}")])
    cmd("ZADD", f"big:zset:{big}", *[x for j in range(10000) for x in (r(10**6) / 7, f"m{j}")])
    cmd("RPUSH", f"big:list:{big}", *[f"item-{r(10**6)}" for _ in range(10000)])
PY

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis node"; else order="node redis"; fi
  for who in $order; do
    dir="$WORK/$who-$round"
    port=$(start "$who" "$dir")
    redis-cli -p "$port" --pipe <"$WORK/data.resp" >/dev/null
    t0=$(now_ms); redis-cli -p "$port" save >/dev/null; t1=$(now_ms)
    record "$round" "SAVE ms" "$who" $((t1 - t0))
    record "$round" "dump bytes" "$who" "$(stat -c %s "$dir/dump.rdb")"
    stop "$port"
    t0=$(now_ms); port=$(start "$who" "$dir"); t1=$(now_ms)
    record "$round" "load ms (start to PONG)" "$who" $((t1 - t0))
    stop "$port"
    rm -rf "$dir"
  done
  echo "round $round/$ROUNDS done" >&2
done

python3 - "$WORK/results.csv" "$KEYS" <<'PY'
import csv, statistics, sys
data = {}
for rnd, metric, who, value in csv.reader(open(sys.argv[1])):
    data.setdefault(metric, {}).setdefault(who, {})[rnd] = float(value)
print(f"| {int(sys.argv[2]):,} keys, mixed | redis-server (median) | cacheplane (median) | ratio cacheplane/redis (median of per-round ratios) |")
print("|---|---:|---:|---:|")
for metric in ["SAVE ms", "load ms (start to PONG)", "dump bytes"]:
    r, n = data[metric]["redis"], data[metric]["node"]
    ratio = statistics.median([n[k] / r[k] for k in r if k in n and r[k] > 0])
    print(f"| {metric} | {statistics.median(r.values()):,.0f} | {statistics.median(n.values()):,.0f} | {ratio:.2f} |")
PY
