#!/usr/bin/env bash
# Builds the release library and places it under the name programs load it by:
#   native/dist/TTHighSpeedDownloader.{so,dylib,dll}   (drop it next to your script)
#   src/tthsd_interface/TTHighSpeedDownloader.{...}     (where the Python package looks)
# Usage: native/build.sh [--debug]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
profile=release
flag=--release
if [[ "${1:-}" == "--debug" ]]; then profile=debug; flag=; fi
cargo build $flag --manifest-path "$here/Cargo.toml" -p tthsd-ffi
case "$(uname -s)" in
  Darwin) built=libTTHighSpeedDownloader.dylib; name=TTHighSpeedDownloader.dylib ;;
  MINGW*|MSYS*|CYGWIN*|Windows_NT) built=TTHighSpeedDownloader.dll; name=TTHighSpeedDownloader.dll ;;
  *) built=libTTHighSpeedDownloader.so; name=TTHighSpeedDownloader.so ;;
esac
target="${CARGO_TARGET_DIR:-$here/target}"
mkdir -p "$here/dist"
cp "$target/$profile/$built" "$here/dist/$name"
cp "$target/$profile/$built" "$here/../src/tthsd_interface/$name"
echo "$here/dist/$name"
