#!/usr/bin/env bash
# Runs compose.yaml with podman-compose on the image just built: up, GET /, down.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-localhost/keel:test}
project=keel-compose-test
export KEEL_PORT=${KEEL_PORT:-$(scripts/free-port)}

# compose.yaml names the image keel:latest and would build it if missing; reuse the tested one.
podman tag "$image" localhost/keel:latest
down() { podman-compose -p "$project" -f compose.yaml down >/dev/null 2>&1 || true; }
trap down EXIT
down
podman-compose -p "$project" -f compose.yaml --podman-run-args="--runtime runc" up -d >/dev/null
body=""
for _ in $(seq 1 100); do
    body=$(curl -fsS "http://127.0.0.1:$KEEL_PORT/" 2>/dev/null) && break
    sleep 0.1
done
[ "$body" = "Result: Async operation result" ] || { podman-compose -p "$project" -f compose.yaml logs | tail -20; echo "FAIL: compose up, GET / answered: '$body'" >&2; exit 1; }
echo "podman-compose up: GET / on port $KEEL_PORT answered: $body"
