#!/usr/bin/env bash
# Compile-check the core for the release platforms this machine cannot run:
#
#   scripts/check-targets.sh            # clippy -D warnings for each target below
#
# cargo-zigbuild clippy --target T: zig compiles aws-lc-sys's C for T, rustc checks every
# cfg(windows) / macOS / aarch64 path; nothing is linked or run. Needs each target's
# standard library (`rustup target add`, done here when missing) and the tools that
# scripts/build-wheel.sh installs (ziglang, cargo-zigbuild). Windows is checked as
# x86_64-pc-windows-gnu (zig has no MSVC); the release builds with MSVC. Library code
# only: the tests are Linux-only. About a minute per target the first time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
TARGETS=(aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-gnu)
# Apart from native/target: other targets' artifacts would only crowd it.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-native/target/cross-check}

"$PYTHON" -m pip install --quiet ziglang==0.17.1 cargo-zigbuild==0.24.1
PATH="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')"):$PATH"
export PATH

installed=$(rustup target list --installed)
failed=0
for target in "${TARGETS[@]}"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
    printf '== %s\n' "$target"
    cargo-zigbuild clippy --manifest-path native/Cargo.toml --workspace --target "$target" \
        -- -D warnings || failed=1
done
exit "$failed"
