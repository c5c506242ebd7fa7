#!/usr/bin/env bash
# Installs (once, under .cache/) and starts the object-store servers the tests use, on
# 127.0.0.1 and free ports: Azurite (Azure Blob emulator, from npm) and moto's S3 server
# (from PyPI). Creates the container and the buckets, and prints the environment the tests
# read, as `export` lines. Stop them with: scripts/object-stores.sh stop
# Usage: eval "$(scripts/object-stores.sh start)"
set -euo pipefail
cd "$(dirname "$0")/.."
# Installs are shared under .cache/; a run's pids, data and logs go to OBJECT_STORES_RUN, so
# several runs (tests, a benchmark) can each start and stop their own servers.
CACHE=.cache/object-stores
RUN=${OBJECT_STORES_RUN:-$CACHE/run}
mkdir -p "$CACHE" "$RUN"
PIDS="$RUN/pids"

if [ "${1:-start}" = stop ]; then
  [ -f "$PIDS" ] || exit 0
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$PIDS"
  # Gone before the caller removes their data: a dying Azurite still writes there.
  while read -r pid; do
    for _ in $(seq 500); do kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  done <"$PIDS"
  rm -f "$PIDS"
  exit 0
fi

log() { echo "$@" >&2; }
if [ ! -x "$CACHE/npm/node_modules/.bin/azurite-blob" ]; then
  log "installing azurite@3 from npm"
  npm install --silent --no-audit --no-fund --prefix "$CACHE/npm" azurite@3 >&2
fi
# The tests' Python side: the S3 server, the stores' own SDKs (setting up buckets and
# containers, listing versions), the Azure management SDK and redis-py (the SDK test),
# schemathesis (the management API against its own OpenAPI document).
PY_PACKAGES=("moto[server]" boto3 azure-storage-blob azure-mgmt-redis redis schemathesis)
if ! "$CACHE/venv/bin/python" -c "import moto, boto3, azure.storage.blob, azure.mgmt.redis, redis, schemathesis" 2>/dev/null; then
  log "installing ${PY_PACKAGES[*]} from PyPI"
  [ -x "$CACHE/venv/bin/python" ] || python3 -m venv "$CACHE/venv" >&2
  "$CACHE/venv/bin/pip" install --quiet "${PY_PACKAGES[@]}" >&2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
AZ_PORT=$(free_port)
S3_PORT=$(free_port)
rm -rf "$RUN/azurite-data"
# Two accounts: Azurite's well-known one, and one with blob soft delete on (7 days) for the
# retention-policy tests; Azurite's service properties are per account.
DEV_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SOFT_KEY="c29mdGRlbGV0ZS1hY2NvdW50LWtleS1mb3ItY2FjaGVwbGFuZS10ZXN0cw=="
AZURITE_ACCOUNTS="devstoreaccount1:$DEV_KEY;softdelete:$SOFT_KEY" \
"$CACHE/npm/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
  --location "$RUN/azurite-data" --skipApiVersionCheck --loose --disableTelemetry >"$RUN/azurite.log" 2>&1 &
echo $! >>"$PIDS"
"$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$RUN/moto.log" 2>&1 &
echo $! >>"$PIDS"

AZ="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$DEV_KEY;BlobEndpoint=http://127.0.0.1:$AZ_PORT/devstoreaccount1"
AZ_SOFT="DefaultEndpointsProtocol=http;AccountName=softdelete;AccountKey=$SOFT_KEY;BlobEndpoint=http://127.0.0.1:$AZ_PORT/softdelete"
"$CACHE/venv/bin/python" - "$AZ" "$AZ_SOFT" "$S3_PORT" >&2 <<'PY'
import sys, time
import boto3
from azure.storage.blob import BlobServiceClient, RetentionPolicy
az, az_soft, s3_port = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.time() + 30
while True:
    try:
        for conn in [az, az_soft]:
            svc = BlobServiceClient.from_connection_string(conn)
            for name in ["cacheplane", "secondary"]:
                if not svc.get_container_client(name).exists():
                    svc.create_container(name)
        BlobServiceClient.from_connection_string(az_soft).set_service_properties(
            delete_retention_policy=RetentionPolicy(enabled=True, days=7))
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        for name in ["cacheplane", "secondary", "versioned", "lifecycle"]:
            s3.create_bucket(Bucket=name)
        for name in ["versioned", "lifecycle"]:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_lifecycle_configuration(Bucket="lifecycle", LifecycleConfiguration={"Rules": [{
            "ID": "noncurrent-3-days", "Filter": {"Prefix": ""}, "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 3}}]})
        break
    except Exception as e:
        if time.time() > deadline:
            raise SystemExit(f"object stores did not come up: {e}")
        time.sleep(0.2)
PY
S3="Provider=S3;Endpoint=http://127.0.0.1:$S3_PORT;Bucket=cacheplane;Region=us-east-1;AccessKeyId=test;SecretAccessKey=test"
echo "export CACHEPLANE_TEST_AZURITE='$AZ'"
echo "export CACHEPLANE_TEST_S3='$S3'"
echo "export CACHEPLANE_TEST_S3_VERSIONED='${S3/Bucket=cacheplane/Bucket=versioned}'"
echo "export CACHEPLANE_TEST_S3_LIFECYCLE='${S3/Bucket=cacheplane/Bucket=lifecycle}'"
echo "export CACHEPLANE_TEST_AZURITE_SOFT_DELETE='$AZ_SOFT'"
echo "export CACHEPLANE_TEST_PYTHON='$PWD/$CACHE/venv/bin/python'"
echo "export CACHEPLANE_TEST_S3_ENDPOINT='http://127.0.0.1:$S3_PORT'"
echo "export CACHEPLANE_TEST_AZURITE_ENDPOINT='http://127.0.0.1:$AZ_PORT/devstoreaccount1'"
