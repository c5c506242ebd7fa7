#!/usr/bin/env bash
# TLS side by side: redis-server 7.0 (Debian's, built with OpenSSL) vs a cacheplane node
# (rustls), both on the same certificate, alternating rounds; redis-benchmark --tls
# SET/GET unpipelined and at -P 16, and handshakes per second (-k 0: a new connection per
# request). Prints node/redis ratios of the medians (higher is better): requests per second,
# and requests per second of the server's CPU (unpipelined, the client's core is the
# bottleneck, so throughput alone moves by ±10 % from run to run). Handshakes are counted
# twice: with redis-benchmark (OpenSSL 3.0, whose client spends more CPU per handshake than
# either server, so it mostly measures itself) and with cacheplane-loadgen --mode handshake
# (rustls, a new connection per PING, no session resumption), whose client is cheap
# enough to keep redis-server's core busy. Unpipelined SET/GET run with
# cacheplane-loadgen --mode command too, for the same reason.
# Usage: bench/tls.sh [rounds]   Environment: N (requests per test), N_HANDSHAKES.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${N:-200000}
N_HANDSHAKES=${N_HANDSHAKES:-20000}
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
WORK=$(mktemp -d)
source bench/lib.sh
trap 'stop_all; rm -rf "$WORK"' EXIT
need_loadgen

# One certificate for both, from a throwaway CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/ext" -out "$WORK/server.pem" 2>/dev/null

TLS_PORT_R=$(free_port); TLS_PORT_N=$(free_port)
tls_flags() { echo --tls-cert-file "$WORK/server.pem" --tls-key-file "$WORK/server.key" --tls-auth-clients no --tls-port "$1"; }
# shellcheck disable=SC2046
RPORT=$(start redis "$WORK/redis" $(tls_flags "$TLS_PORT_R"))
# shellcheck disable=SC2046
NPORT=$(start node "$WORK/node" $(tls_flags "$TLS_PORT_N"))

run() { # tls-port pipeline n test keepalive
  $PIN_CLIENT redis-benchmark --tls --cacert "$WORK/ca.pem" -h 127.0.0.1 -p "$1" -c 50 -P "$2" -n "$3" \
    -r 100000 -t "$4" -k "$5" --csv 2>/dev/null | tail -n +2 | tr -d '"' | cut -d, -f2
}

: >"$WORK/results.csv"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="redis node"; else order="node redis"; fi
  for case in "set 1" "get 1" "set 16" "get 16" "loadgen-set 1" "loadgen-get 1" "ping_inline handshake" "rustls handshake"; do
    read -r test p <<<"$case"
    for who in $order; do
      port=$TLS_PORT_R; plain=$RPORT
      if [ "$who" = node ]; then port=$TLS_PORT_N; plain=$NPORT; fi
      if [ "${test%%-*}" = loadgen ]; then
        # redis-benchmark's -t set/get: a 3-byte value, keys below -r.
        cmd=(get "key:__rand_int__"); [ "$test" = loadgen-set ] && cmd=(set "key:__rand_int__" xxx)
        cpu0=$(cpu_s "$plain")
        rps=$(loadgen_rps "$port" "$p" "$N" --keys 100000 --tls-ca "$WORK/ca.pem" -- "${cmd[@]}")
        record "$round" "${test#*-} -P $p (loadgen)" "$who" "$rps"
        record "$round" "${test#*-} -P $p (loadgen) per server CPU s" "$who" "$(per_cpu_s "$plain" "$N" "$cpu0")"
        continue
      fi
      if [ "$test" = rustls ]; then
        cpu0=$(cpu_s "$plain")
        rps=$($PIN_CLIENT "$LOADGEN" --mode handshake --port "$port" --tls-ca "$WORK/ca.pem" \
          --connections 50 --requests "$N_HANDSHAKES" | tr ' ' '\n' | awk -F= '$1=="handshakes_per_sec"{print $2}')
        record "$round" "rustls handshakes" "$who" "$rps"
        record "$round" "rustls handshakes per server CPU s" "$who" "$(per_cpu_s "$plain" "$N_HANDSHAKES" "$cpu0")"
        continue
      fi
      # A handshake test: one request per connection, unpipelined.
      if [ "$p" = handshake ]; then set -- 1 "$N_HANDSHAKES" 0; else set -- "$p" "$N" 1; fi
      cpu0=$(cpu_s "$plain")
      rps=$(run "$port" "$1" "$2" "$test" "$3")
      record "$round" "$test -P $p" "$who" "$rps"
      record "$round" "$test -P $p per server CPU s" "$who" "$(per_cpu_s "$plain" "$2" "$cpu0")"
    done
  done
  echo "round $round/$ROUNDS done" >&2
done

python3 - "$WORK/results.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
by = {}
for r, metric, who, v in rows:
    by.setdefault(metric, {}).setdefault(who, []).append(float(v))
print(f"{'test (TLS)':<44}{'redis':>12}{'cacheplane':>12}{'ratio':>8}")
for metric, w in by.items():
    r, n = statistics.median(w["redis"]), statistics.median(w["node"])
    name = metric.replace("ping_inline -P handshake", "handshakes (new conn/req)").replace(
        "rustls handshakes", "handshakes (rustls client)")
    print(f"{name:<44}{r:>12.0f}{n:>12.0f}{n / r:>8.2f}")
PY
