#!/usr/bin/env bash
# make test-guides: the guides in docs/guides/ followed as written, on a copy of this tree in a
# temporary folder: add an endpoint, add an operation kind, add a configuration key, then remove
# the examples and the demo kinds (scripts/guides.py takes their code and the lines they quote
# from the pages). The copy must then pass clippy, its own whole test suite, and
# tests/guides/guides.rs (a module of the copy's service tests), which checks what the guides
# built and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ ! -d src/routes/examples ] || [ ! -d src/kinds/demo ]; then
    echo "guides test: nothing to do: this tree has already followed the removal guide"
    exit 0
fi
copy=$(mktemp -d /tmp/keel-guides-test.XXXXXX)
trap 'rm -rf "$copy"' EXIT

git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy"

# The same target directory as this tree's build, so only keel itself is compiled again.
export CARGO_TARGET_DIR="$root/target"
# First the commands the guides and the README tell a reader to run, on the copy as cloned.
command -v psql >/dev/null || { apt-get update -q && apt-get install -y -q postgresql-client; }
command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
python3 scripts/guides.py commands "$copy" README.md docs/guides/*.md
# Then the code the guides write, and the copy must still pass.
python3 scripts/guides.py code docs/guides "$copy"
cp tests/guides/guides.rs "$copy/tests/service/guides_followed.rs"
echo "mod guides_followed;" >> "$copy/tests/service/main.rs"
cd "$copy"
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
echo "guides test: passed"
