#!/usr/bin/env bash
# make clients: real, generic clients against a live keel, installed as their users install
# them. Today azure-core's long-running-operation poller (PyPI), which any service answering
# 202 with Operation-Location should satisfy (tests/clients/azure_lro.py).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CLIENTS_VENV:-.venv}
if ! "$venv/bin/python" -c 'import azure.core' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'azure-core>=1.30,<2'
fi

cargo build --locked --quiet --bin keel
port=$(scripts/free-port)
APP_SERVER__PORT=$port APP_LOG__FILTER=warn target/debug/keel &
keel=$!
trap 'kill $keel 2>/dev/null; wait $keel 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

"$venv/bin/python" tests/clients/azure_lro.py "http://127.0.0.1:$port"
