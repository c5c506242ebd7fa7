#!/usr/bin/env bash
# The control plane side by side with redis-server, in one run:
# - create-to-ready of N caches through the management API (PUT, follow Azure-AsyncOperation
#   to Succeeded, then AUTH + PING on the cache's port answered) vs starting N redis-server
#   processes (spawn to PONG);
# - memory: `cacheplane serve` with N idle caches (RSS of the one process) vs N idle
#   redis-server processes (sum of their RSS).
# Prints p50/p99 and ratios. Usage: bench/serve.sh [caches]   (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
SERVE_PID=
REDIS_PIDS=()
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null
  for p in "${REDIS_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source bench/lib.sh

# redis-server: N processes, each timed from spawn to PONG.
: >"$WORK/redis-ms"
for i in $(seq "$N"); do
  port=$(free_port)
  mkdir -p "$WORK/redis-$i"
  t0=$(date +%s%N)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$i" --save "" --daemonize no \
    >"$WORK/redis-$i/log" 2>&1 &
  REDIS_PIDS+=($!)
  until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; do sleep 0.001; done
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000)) >>"$WORK/redis-ms"
done
redis_rss=0
for p in "${REDIS_PIDS[@]}"; do redis_rss=$((redis_rss + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done

# cacheplane serve: N caches through the API.
api_port=$(free_port)
"$BIN" serve --listen "127.0.0.1:$api_port" --data-dir "$WORK/serve" --token bench >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
python3 - "$api_port" "$N" "$WORK/serve-ms" <<'PY'
import json, socket, sys, time, urllib.request
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
hdr = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
def call(method, url, body=None):
    req = urllib.request.Request(url, method=method, headers=hdr,
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req) as r:
        return r.status, r.headers, json.loads(r.read() or b"null")
deadline = time.time() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
    except OSError:
        if time.time() > deadline: sys.exit("serve never listened")
        time.sleep(0.01)
def ping(port, key):
    s = socket.create_connection(("127.0.0.1", port))
    a = f"*2\r\n$4\r\nAUTH\r\n${len(key)}\r\n{key}\r\n*1\r\n$4\r\nPING\r\n".encode()
    s.sendall(a); got = b""
    while got.count(b"\r\n") < 2: got += s.recv(100)
    s.close()
    assert got == b"+OK\r\n+PONG\r\n", got
with open(out, "w") as f:
    for i in range(n):
        url = f"{base}/subscriptions/bench/resourceGroups/rg/providers/Microsoft.Cache/redis/c{i}"
        t0 = time.perf_counter()
        st, h, _ = call("PUT", url + "?api-version=2024-11-01", {"location": "westeurope",
            "properties": {"sku": {"name": "Standard", "family": "C", "capacity": 1}}})
        assert st == 201, st
        op = h["Azure-AsyncOperation"]
        while True:
            _, _, o = call("GET", op)
            if o["status"] != "InProgress": break
            time.sleep(0.001)
        assert o["status"] == "Succeeded", o
        _, _, c = call("GET", url + "?api-version=2024-11-01")
        _, _, k = call("POST", url + "/listKeys?api-version=2024-11-01")
        ping(c["properties"]["port"], k["primaryKey"])
        f.write(f"{int((time.perf_counter() - t0) * 1e6)}\n")
PY
sleep 2 # let the caches settle into idle before reading memory
serve_rss=$(awk '/VmRSS/{print $2}' "/proc/$SERVE_PID/status")

python3 - "$WORK/redis-ms" "$WORK/serve-ms" "$redis_rss" "$serve_rss" "$N" <<'PY'
import statistics, sys
r = sorted(int(x) / 1000 for x in open(sys.argv[1]))
s = sorted(int(x) / 1000 for x in open(sys.argv[2]))
rr, sr, n = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pct = lambda v, p: v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
print(f"| {n} caches | redis-server processes | cacheplane serve | ratio |")
print("|---|---:|---:|---:|")
for p in (50, 99):
    print(f"| ready ms p{p}: spawn to PONG vs PUT to Succeeded + AUTH/PING | {pct(r, p):.1f} | {pct(s, p):.1f} | {pct(s, p) / pct(r, p):.2f} |")
print(f"| memory MiB, {n} idle: sum of RSS vs one process's RSS | {rr / 1024:.0f} | {sr / 1024:.0f} | {sr / rr:.2f} |")
print()
print(f"goal: ready p50 < 50 ms with the in-process runtime (measured {pct(s, 50):.1f} ms)")
PY
