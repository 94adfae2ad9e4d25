#!/usr/bin/env bash
# make test-rename: `make rename` on a copy of this tree, in a temporary folder. It must refuse
# bad names and change nothing, then rename, leave no `keel` behind, and the renamed service
# must build and pass its own tests (`make test`'s command, with the lock file as renamed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if ! grep -q '^name = "keel"' Cargo.toml; then
    echo "rename test: this tree is a renamed service already; nothing to test"
    exit 0
fi
copy=$(mktemp -d /tmp/keel-rename-test.XXXXXX)
trap 'rm -rf "$copy"' EXIT

# The tree as it would be committed: tracked files and new ones, not what .gitignore leaves out.
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy"

echo "== bad names are refused, and nothing changes"
# tower: its library crate would be tower-http, a dependency.
for bad in "Billing" "billing_service" "9lives" "a--b" "-x" "self" "tokio" "tower" "keel" "x$(printf 'y%.0s' $(seq 1 70))"; do
    if python3 scripts/rename.py "$bad" "$copy" >/dev/null 2>&1; then
        echo "FAIL: $bad was accepted" >&2; exit 1
    fi
done
grep -q '^name = "keel"' "$copy/Cargo.toml" || { echo "FAIL: a refused name changed the tree" >&2; exit 1; }

echo "== rename to billing-service"
python3 scripts/rename.py billing-service "$copy" | tail -3
if grep -rIil keel "$copy" --exclude-dir=.git --exclude=rename.py; then
    echo "FAIL: the files above still say keel" >&2; exit 1
fi
if find "$copy" -mindepth 1 -path "$copy/.git" -prune -o -iname '*keel*' -print | grep .; then
    echo "FAIL: the paths above still say keel" >&2; exit 1
fi
grep -q '^name = "billing-service"' "$copy/Cargo.toml"
grep -q '^name = "billing-service-http"' "$copy/crates/billing-service-http/Cargo.toml"
grep -rq 'billing_service_build_info' "$copy/crates"

echo "== the renamed service builds and passes its tests"
# The same target directory as this tree's build: the dependencies are reused, and only the
# renamed crate (its artifacts named billing-service) is compiled.
export CARGO_TARGET_DIR="$root/target"
(cd "$copy" && cargo test --all-targets --locked)
"$CARGO_TARGET_DIR/debug/billing-service" --version
echo "rename test: passed"
