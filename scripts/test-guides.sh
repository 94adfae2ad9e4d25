#!/usr/bin/env bash
# make test-guides: the README's guides followed as written, on a copy of this tree in a
# temporary folder: "Adding an endpoint", "Adding an operation kind" and "Adding a configuration
# key" (scripts/guides.py takes their code and the lines they quote from the README). The copy must then pass clippy, its
# own whole test suite, and tests/guides/guides.rs, which checks what the guides built.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
copy=$(mktemp -d /tmp/keel-guides-test.XXXXXX)
trap 'rm -rf "$copy"' EXIT

git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy"
python3 scripts/guides.py README.md "$copy"
cp tests/guides/guides.rs "$copy/tests/guides_followed.rs"

# The same target directory as this tree's build, so only keel itself is compiled again.
export CARGO_TARGET_DIR="$root/target"
cd "$copy"
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
echo "guides test: passed"
