#!/usr/bin/env bash
# The project's one test command: what the README shows and what .ci/run runs.
#
# Expects the package installed in the active Python (pip install '.[dev]'), and cargo.
# Runs, in order: cargo fmt --check, cargo clippy -D warnings, cargo test (native/),
# ruff, mypy --strict, pytest (tests/). Stops at the first failure; pytest's "no tests
# collected" (exit 5) fails too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
MANIFEST=native/Cargo.toml
PY_PATHS=(src tests/api tests/packaging tests/distributed examples setup.py noxfile.py)

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --manifest-path "$MANIFEST" --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --manifest-path "$MANIFEST" --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --manifest-path "$MANIFEST" --workspace

step "ruff"
"$PYTHON" -m ruff check "${PY_PATHS[@]}"
"$PYTHON" -m ruff format --check "${PY_PATHS[@]}"

step "mypy --strict"
"$PYTHON" -m mypy --strict

step "pytest"
# Run against the installed package (with its bundled core), not src/.
"$PYTHON" -m pytest "$@"
