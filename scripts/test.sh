#!/usr/bin/env bash
# The whole test suite, installing what it needs first. This is the README's test command
# and what CI runs (.ci/run). Needs: the Rust toolchain, Node.js/npm and Python 3; installs
# Redis 7.0 tools (redis-server, redis-cli, redis-benchmark, redis-check-*) and Chromium (the
# dashboard's browser test) from Debian's packages, Azurite from npm, and moto's S3 server
# and the Azure CLI from PyPI (under .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || missing+=(redis-tools)
# Headless Chromium renders the dashboard and the API docs in the browser tests.
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
redis-server --version | grep -q ' v=7\.' || { echo "redis-server 7.x is required, found: $(redis-server --version)" >&2; exit 1; }

# The Azure CLI for its end-to-end test, from PyPI into its own venv (it pins its own
# Azure SDKs), once.
AZ_VENV=.cache/azure-cli/venv
if ! [ -x "$AZ_VENV/bin/az" ]; then
  echo "installing azure-cli from PyPI"
  [ -x "$AZ_VENV/bin/python" ] || python3 -m venv "$AZ_VENV"
  "$AZ_VENV/bin/pip" install --quiet "azure-cli==2.91.0"
fi
export CACHEPLANE_TEST_AZ="$PWD/$AZ_VENV/bin/az"

# Azurite and moto's S3 server for the object-store tests, stopped when this script ends.
trap 'scripts/object-stores.sh stop' EXIT
eval "$(scripts/object-stores.sh start)"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The parsers' fuzz-style property tests (named fuzz_*: RESP decoder, RDB and AOF readers,
# AOF manifest and checksum list, connection strings) again with many more cases: a bounded
# fuzz run, about 95 s on 2 cores. --workspace --lib reuses the test build above; a -p subset
# resolves dependency features afresh and may rebuild them.
PROPTEST_CASES=${PROPTEST_CASES:-50000} cargo test --workspace --lib --locked --quiet -- fuzz_
# Redis 7.0.15's own test units against a node (the debug binary the tests built), each
# held to its floor in scripts/redis-suite.floor so that compatibility cannot slip
# unnoticed. Fetches the suite from Debian's source package once (into .cache/).
CACHEPLANE_BIN=target/debug/cacheplane UNIT_TIMEOUT=${UNIT_TIMEOUT:-300} \
  scripts/redis-suite.sh --floor scripts/redis-suite.floor
