#!/usr/bin/env bash
# make clients: real clients against a live keel, installed as their users install them. The
# keel they drive is the test bed (tests/service/support/testbed.rs): keel's routes and operation layer
# with the tests' own kinds, so that this keeps passing when the demo kinds are removed.
# - azure-core's generic long-running-operation poller (PyPI), which any service answering 202
#   with Operation-Location should satisfy (tests/clients/azure_lro.py);
# - a TypeScript client generated from /openapi.json with openapi-typescript and openapi-fetch
#   (npm, versions pinned in tests/clients/typescript/package-lock.json), type-checked by tsc,
#   then run: submit, wait, stream, cancel, delete (tests/clients/typescript/client.ts).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CLIENTS_VENV:-.venv}
if ! "$venv/bin/python" -c 'import azure.core' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'azure-core>=1.30,<2'
fi

# The test bed is served by a test binary running its one ignored test, as
# tests/service/support/process.rs's Process::testbed does.
testbed=$(cargo test --locked --quiet --no-run --test service --message-format=json \
    | python3 -c 'import json, sys; print(next(m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "service"))')
port=$(scripts/free-port)
KEEL_TESTBED=1 APP_SERVER__PORT=$port APP_LOG__FILTER=warn \
    "$testbed" --exact support::process::serve_the_testbed --ignored --nocapture --quiet &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

"$venv/bin/python" tests/clients/azure_lro.py "http://127.0.0.1:$port"

ts=tests/clients/typescript
command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
[ -x "$ts/node_modules/.bin/tsc" ] || npm ci --prefix "$ts" --no-audit --no-fund --silent
mkdir -p "$ts/generated"
# As a user generates their client: from the served document. Fields with a default may be
# left out of a request, so they are not made required.
"$ts/node_modules/.bin/openapi-typescript" "http://127.0.0.1:$port/openapi.json" \
    --output "$ts/generated/keel.d.ts" --default-non-nullable false
"$ts/node_modules/.bin/tsc" -p "$ts" --noEmit
"$ts/node_modules/.bin/tsc" -p "$ts"
node "$ts/dist/client.js" "http://127.0.0.1:$port"
