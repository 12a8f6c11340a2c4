#!/usr/bin/env bash
# The tthsd command line, offline: a loopback server stands in for the network.
#
#     bash examples/command_line.sh
#
# Needs the package installed (pip install .), which puts `tthsd` on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
work=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null || true; rm -rf "$work"' EXIT

tthsd --version

# 1. The built-in demo: generated files served on 127.0.0.1, downloaded, verified.
tthsd --demo -q && echo "demo: OK"

# 2. A server of our own (examples/_server.py prints its URLs, serves until stdin closes).
exec 3> >(python _server.py movie.mkv song.flac notes.txt > "$work/urls.txt")
for _ in $(seq 100); do [ "$(wc -l < "$work/urls.txt")" -ge 3 ] && break; sleep 0.05; done

# One URL to a chosen path, 16 connections, 1 MiB ranges, a speed limit, retries.
tthsd -o "$work/film.mkv" -x 16 -k 1 --limit-rate 40M --retries 3 "$(head -n1 "$work/urls.txt")"

# Several at once from a list (a URL per line, optionally followed by a path), into a
# folder, with a header on every request; the exit status says whether all succeeded.
tthsd -j -d "$work/all" -H 'Authorization: Bearer not-a-secret' -i "$work/urls.txt"
ls -l "$work/all"

# Machine-readable: every event as one JSON line, then a summary line.
tthsd --json -d "$work/json" -i "$work/urls.txt" | tail -n 1

# A failure: exit status 1, the file and its error code on standard error.
if tthsd -q --retries 0 -d "$work" "$(head -n1 "$work/urls.txt").missing"; then
    echo "unexpected success" >&2; exit 1
else
    echo "a missing file exits with status $?"
fi
