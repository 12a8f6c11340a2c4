#!/usr/bin/env bash
# Entry point of the benchmark of issues 4 and 15: installs the peers that are missing, then
# runs bench/bench.py with every argument given here (see bench/README.md, or --help).
#
#   bench/run.sh                      full run, 5 rounds, tables on stdout
#   bench/run.sh --write-results      ... and write bench/RESULTS.md
#   bench/run.sh --smoke              smoke test at 1/16 size, one round
#   bench/run.sh --workloads tls,wan,straggler     only issue 15's workloads
#
# Environment: PYTHON (default python3), BENCH_NO_INSTALL=1 to skip installing anything.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

install_missing() {
    # Debian package that provides each command the benchmark runs.
    # Debian's nginx is built with the ssl and http_v2 modules the TLS servers need;
    # openssl makes the throwaway CA of issue 15's workloads.
    local -A pkg_of=([nginx]=nginx [curl]=curl [aria2c]=aria2 [axel]=axel [openssl]=openssl)
    local missing=() cmd
    for cmd in nginx curl aria2c axel openssl; do
        # nginx lives in /usr/sbin, which a non-login PATH may lack.
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${pkg_of[$cmd]}")
    done
    # GNU time measures each tool's peak RSS apart from the harness's (see bench.py).
    [ -x /usr/bin/time ] || missing+=(time)
    if [ "${#missing[@]}" -gt 0 ]; then
        local sudo=()
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
                echo "run.sh: missing ${missing[*]} and not root: install them, or rerun as root" >&2
                return 0
            fi
        fi
        echo "run.sh: installing ${missing[*]}" >&2
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
            || echo "run.sh: apt-get install failed; the harness skips what is still missing" >&2
    fi
    # hf_transfer is an optional peer: skip it quietly when PyPI or a wheel is out of reach.
    if ! "$python" -c 'import hf_transfer' >/dev/null 2>&1; then
        echo "run.sh: installing hf_transfer (optional)" >&2
        "$python" -m pip install -q hf_transfer >&2 \
            || echo "run.sh: hf_transfer unavailable; the harness skips it" >&2
    fi
}

if [ "${BENCH_NO_INSTALL:-0}" != 1 ]; then
    install_missing
fi

# The harness runs nginx and the tools itself; /usr/sbin holds nginx on Debian.
export PATH="$PATH:/usr/sbin:/sbin"
exec "$python" "$here/bench.py" "$@"
