#!/usr/bin/env bash
# What the soft-delete accounting costs per object-store event, next to the upload the event
# stands for: a ledger fed 1M events of an AOF pipeline's pattern, and the median upload of
# a 4 MiB segment and of a 2 KiB manifest to Azurite and to the S3 server (moto), in one run.
# Usage: bench/accounting.sh [events]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
cargo build --release --quiet --example accounting_overhead -p serve
WORK=$(mktemp -d)
cleanup() {
  OBJECT_STORES_RUN="$WORK/object-stores" scripts/object-stores.sh stop
  rm -rf "$WORK"
}
trap cleanup EXIT
eval "$(OBJECT_STORES_RUN="$WORK/object-stores" scripts/object-stores.sh start)"
for store in azurite s3; do
  if [ $store = azurite ]; then conn=$CACHEPLANE_TEST_AZURITE; else conn=$CACHEPLANE_TEST_S3; fi
  echo "### $store"
  target/release/examples/accounting_overhead "$conn" "$EVENTS"
  echo
done
