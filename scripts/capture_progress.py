"""Capture the tthsd progress display as the docs show it (docs/img/progress.svg and .txt).

    python scripts/capture_progress.py [--out docs/img] [--at 1.2]

Runs ``tthsd --demo`` in a detached tmux session of a fixed size, captures the pane with
its colours (``tmux capture-pane -e``) ``--at`` seconds after the start, and again when
the run has ended, and writes each screen as SVG (rich's ``save_svg``) and plain text.
Needs tmux and the installed package (``tthsd`` on PATH, the core found as usual).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.text import Text

COLUMNS, ROWS = 104, 12


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], check=True, capture_output=True, text=True
    ).stdout


def _save(screen: str, out: Path, stem: str, title: str) -> None:
    lines = screen.rstrip("\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    console = Console(record=True, width=COLUMNS, force_terminal=True, color_system="truecolor")
    for line in lines:
        console.print(Text.from_ansi(line), no_wrap=True, crop=True)
    console.save_svg(str(out / f"{stem}.svg"), title=title)
    plain = Text.from_ansi("\n".join(lines)).plain
    (out / f"{stem}.txt").write_text(plain + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--at", type=float, default=1.2, help="seconds before the capture")
    args = parser.parse_args()
    if shutil.which("tmux") is None or shutil.which("tthsd") is None:
        print("needs tmux and tthsd on PATH", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    session = f"tthsd-capture-{uuid.uuid4().hex[:8]}"
    command = "tthsd --demo; echo; echo '[exit status '$?']'; sleep 30"
    _tmux(
        "new-session", "-d", "-s", session, "-x", str(COLUMNS), "-y", str(ROWS),
        f"bash -c {shlex.quote(command)}",
    )  # fmt: skip
    try:
        time.sleep(args.at)
        during = _tmux("capture-pane", "-e", "-p", "-t", session)
        deadline = time.monotonic() + 30
        after = during
        while time.monotonic() < deadline:
            time.sleep(0.2)
            after = _tmux("capture-pane", "-e", "-p", "-t", session)
            if "[exit status" in after:
                break
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    _save(during, args.out, "progress", "tthsd --demo (during)")
    _save(after.replace("\n[exit status 0]", ""), args.out, "progress-done", "tthsd --demo (done)")
    print(f"wrote {args.out}/progress.svg, progress.txt, progress-done.svg, progress-done.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
