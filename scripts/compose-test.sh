#!/usr/bin/env bash
# Runs compose.yaml with podman-compose on the image just built: up, GET /, down. The
# `replicas` profile needs a Postgres image, which no registry here can supply: its services
# are checked as podman-compose would start them (--dry-run), and the image itself is run on
# the Postgres store by docker-test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-localhost/keel:test}
project=keel-compose-test
export KEEL_PORT=${KEEL_PORT:-$(scripts/free-port)}

# compose.yaml names the image keel:latest and would build it if missing; reuse the tested one.
podman tag "$image" localhost/keel:latest
down() {
    podman-compose -p "$project" -f compose.yaml down >/dev/null 2>&1 || true
    # What the dry run below creates on the way (podman-compose 1.0 makes these even then).
    podman volume rm -f "$project-replicas_postgres" >/dev/null 2>&1 || true
    podman network rm "$project-replicas_default" >/dev/null 2>&1 || true
}
trap down EXIT
down
# The default service by name: podman-compose 1.0 does not know profiles (Docker Compose does).
podman-compose -p "$project" -f compose.yaml --podman-run-args="--runtime runc" up -d keel >/dev/null
body=""
for _ in $(seq 1 100); do
    body=$(curl -fsS "http://127.0.0.1:$KEEL_PORT/" 2>/dev/null) && break
    sleep 0.1
done
[ "$body" = "Result: Async operation result" ] || { podman-compose -p "$project" -f compose.yaml logs | tail -20; echo "FAIL: compose up, GET / answered: '$body'" >&2; exit 1; }
echo "podman-compose up: GET / on port $KEEL_PORT answered: $body"

planned=$(podman-compose --dry-run -p "$project-replicas" -f compose.yaml up -d keel-1 keel-2 2>&1)
for expected in "DATABASE_URL=postgres://keel:keel@postgres:5432/keel" "APP_OPERATIONS__STORE=postgres" \
                "--name=$project-replicas_keel-2_1" "--name=$project-replicas_postgres_1"; do
    grep -qF -- "$expected" <<<"$planned" || { echo "$planned" | tail -20; echo "FAIL: the replicas profile lacks $expected" >&2; exit 1; }
done
echo "podman-compose --dry-run: the replicas profile starts postgres, keel-1 and keel-2 on the Postgres store"
