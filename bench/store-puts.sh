#!/usr/bin/env bash
# What the object-store emulators can take: small PUTs (1 KiB) to Azurite and to moto's S3
# server from curl over kept-alive connections, 1, 2 and 4 connections at once, each
# store pinned to core 0 as in the other benchmarks. Prints PUTs per second and latency.
# Zero-loss mode (`aof-durability store`) acknowledges a write once its commit (one PUT)
# landed, so its rate is at most the writes per commit times the PUTs per second a store
# answers; this shows that second factor with nothing of cacheplane in the way.
# Usage: bench/store-puts.sh [puts per connection, default 300]
set -euo pipefail
cd "$(dirname "$0")/.."
PUTS=${1:-300}
WORK=$(mktemp -d)
BIN=unused # no cacheplane binary is measured here
source bench/lib.sh
trap cleanup EXIT
start_object_stores

head -c 1024 /dev/urandom >"$WORK/payload"
# A container SAS for Azurite (curl cannot sign Shared Key requests); moto takes
# unsigned requests.
AZ_SAS=$("$CACHEPLANE_TEST_PYTHON" - "$CACHEPLANE_TEST_AZURITE" <<'PY'
import sys, datetime
from azure.storage.blob import generate_container_sas, ContainerSasPermissions
kv = dict(p.split("=", 1) for p in sys.argv[1].split(";") if p)
sas = generate_container_sas(kv["AccountName"], "cacheplane", account_key=kv["AccountKey"],
    permission=ContainerSasPermissions(write=True, create=True),
    expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
print(kv["BlobEndpoint"] + "/cacheplane?" + sas)
PY
)
s3_field() { echo "$CACHEPLANE_TEST_S3" | tr ';' '\n' | sed -n "s/^$1=//p"; }
S3_BASE="$(s3_field Endpoint)/$(s3_field Bucket)"

# puts <base url> <query> <out>: PUTS uploads over one connection, one latency per line.
puts() {
  local args=()
  for i in $(seq "$PUTS"); do args+=(-o /dev/null -w '%{time_total}\n' "$1/puts/$RANDOM$RANDOM-$i?$2"); done
  $PIN_CLIENT curl -sf -X PUT -H 'x-ms-blob-type: BlockBlob' -H 'content-type: application/octet-stream' \
    --data-binary @"$WORK/payload" "${args[@]}" >"$3"
}

echo "| store | connections | PUTs/s | p50 ms | p90 ms |"
echo "|---|---:|---:|---:|---:|"
for store in azurite s3; do
  if [ "$store" = azurite ]; then base=${AZ_SAS%%\?*} query=${AZ_SAS#*\?}; else base=$S3_BASE query=; fi
  for conns in 1 2 4; do
    start_ms=$(now_ms)
    pids=()
    for c in $(seq "$conns"); do puts "$base" "$query" "$WORK/lat-$c" & pids+=($!); done
    wait "${pids[@]}"
    elapsed_ms=$(($(now_ms) - start_ms))
    cat "$WORK"/lat-* | sort -n | awk -v s="$store" -v c="$conns" -v ms="$elapsed_ms" \
      '{a[NR] = $1} END {printf "| %s | %d | %.0f | %.2f | %.2f |\n", s, c, NR / ms * 1000, a[int(NR / 2)] * 1000, a[int(NR * 0.9)] * 1000}'
    rm -f "$WORK"/lat-*
  done
done
