#!/usr/bin/env bash
# make test-guides: docs/guides.md's guides followed as written, on a copy of this tree in a
# temporary folder: "Adding an endpoint", "Adding an operation kind", "Adding a configuration
# key", then "Removing the examples and the demo kinds" (scripts/guides.py takes their code and
# the lines they quote from the page). The copy must then pass clippy, its own whole test
# suite, and tests/guides/guides.rs, which checks what the guides built and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ ! -d src/http/examples ] || [ ! -d src/operations/kinds/demo ]; then
    echo "guides test: nothing to do: this tree has already followed the removal guide"
    exit 0
fi
copy=$(mktemp -d /tmp/keel-guides-test.XXXXXX)
trap 'rm -rf "$copy"' EXIT

git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy"
python3 scripts/guides.py docs/guides.md "$copy"
cp tests/guides/guides.rs "$copy/tests/guides_followed.rs"

# The same target directory as this tree's build, so only keel itself is compiled again.
export CARGO_TARGET_DIR="$root/target"
cd "$copy"
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
echo "guides test: passed"
