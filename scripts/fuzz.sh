#!/usr/bin/env bash
# Fuzzes a running keel against its own OpenAPI document with schemathesis (PyPI): every
# generated request must get a response the document allows (status, content type, headers,
# body), none may get a 5xx, schema-valid data must be accepted and invalid data refused.
#
# One worker: with two, schemathesis calls ast.parse from two threads, and this machine's
# CPython 3.11.7 then fails now and then with "SystemError: AST constructor recursion depth
# mismatch" (seen once in three runs; an error inside the tool, not a finding), which would turn
# CI red for nothing.
#
# keel runs with access control on, as in production: one API key with every scope, which
# schemathesis sends as the document's security schemes ask (schemathesis.toml, written below);
# its `ignored_auth` check also sends requests without it, which must be refused. /metrics goes to a port of its own.
#
# /examples/sleep is left out: answering 503 once `ms` passes the request timeout is what it
# exists to show, and each such request would hold the run for the whole timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${FUZZ_VENV:-.venv}
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4.32,<5'
fi

cargo build --locked --quiet --bin keel
port=$(scripts/free-port)
work=$(mktemp -d /tmp/keel-fuzz.XXXXXX)
key=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
cat > "$work/auth.toml" <<TOML
[auth]
mode = "api_key"
[[auth.api_keys]]
id = "fuzzer"
sha256 = "$(printf '%s' "$key" | target/debug/keel hash-key)"
scopes = ["operations:read", "operations:write", "operations:admin"]
[metrics]
port = 0
TOML
# The key for the document's security schemes, which schemathesis reads by name.
cat > "$work/schemathesis.toml" <<TOML
[auth.openapi.bearer]
bearer = "$key"
[auth.openapi.api_key]
api_key = "$key"
TOML
# Long polls end within 3 s, well inside schemathesis's 10 s request timeout: the stateful phase
# waits on real, long operations.
APP_CONFIG_FILE=$work/auth.toml APP_SERVER__PORT=$port APP_LOG__FILTER=warn APP_OPERATIONS__MAX_WAIT_MS=3000 \
    target/debug/keel &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT

# Every check schemathesis has (`--checks all`), in every phase, the stateful one included,
# which follows the OpenAPI links from a submission to its operation's routes. The one change:
# positive data acceptance through tests/fuzz/hooks.py, which lets the Idempotency-Key draft's
# two state-dependent refusals of a submission through and nothing else.
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=tests/fuzz "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" \
    run "http://127.0.0.1:$port/openapi.json" \
    --wait-for-schema 60 \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${FUZZ_EXAMPLES:-30}" \
    --workers 1 \
    --exclude-path /examples/sleep
