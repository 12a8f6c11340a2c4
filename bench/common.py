"""Shared by the benchmark's modules: paths, units, the full-size parameters and
the targets of issue 4, logging, and the generated data set the servers serve.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_PATH = HERE / "RESULTS.md"
RELEASE_LIB = REPO / "native" / "target" / "release" / "libTTHighSpeedDownloader.so"

KiB = 1 << 10
MiB = 1 << 20

# Full-size parameters, as issue 4 states them; a run with other values is a smoke run.
DEFAULTS = {"size_mb": 1024, "throttled_mb": 256, "big_mb": 4096, "files": 1000, "file_kb": 64}
OURS_DEFAULT_CONNECTIONS = 64  # ABI.md: thread_count <= 0 means 64
HF_CHUNK = 10 * MiB  # huggingface_hub's chunk size for hf_transfer

# Targets of issue 4, as ratios measured in the same run.
TARGET_W1_WALL = 1.0
TARGET_W1_CPU = 1.3
TARGET_RSS_MIB = 64
TARGET_W2_IDEAL = 1.05
TARGET_W3_WALL = 1.25
TARGET_W3_FILES_PER_S = 3.0
TARGET_CALLBACK_COST = 0.03

# Issue 4's workloads, then issue 15's groups (bench/netbench.py).
DEFAULT_WORKLOADS = "1,2,3,callback,tls,wan,straggler"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)



def scaled_bytes(mb: int, scale: float) -> int:
    # Whole 64 KiB units, so range arithmetic stays ordinary at any scale.
    return max(64 * KiB, int(mb * MiB * scale) // (64 * KiB) * (64 * KiB))



# --------------------------------------------------------------------------- data

# Bump when the generator changes, so stale data files are remade rather than trusted.
GEN_VERSION = 1
GEN_BLOCK = 4 * MiB


def _stream_block(seed: str, index: int, length: int) -> bytes:
    # SHAKE-128 keyed by (seed, block index): every block differs, so neither compression
    # nor deduplication anywhere on the path can make one tool look faster than another.
    return hashlib.shake_128(f"tthsd-bench:{seed}:{index}".encode()).digest(length)


def generate_file(path: Path, size: int, seed: str) -> str:
    """Write `size` bytes of non-repeating content to `path`; return their SHA-256."""
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        index, left = 0, size
        while left:
            block = _stream_block(seed, index, min(GEN_BLOCK, left))
            f.write(block)
            digest.update(block)
            left -= len(block)
            index += 1
    tmp.rename(path)
    return digest.hexdigest()


class DataSet:
    """The data files under `<work>/data`, with a manifest of their sizes and SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = root / "manifest.json"
        try:
            self.manifest: dict[str, dict[str, object]] = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            self.manifest = {}

    def _save(self) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
        tmp.rename(self.manifest_path)

    def ensure(self, rel: str, size: int) -> str:
        """Make `rel` (relative to the data root) `size` bytes long if it is not; return its SHA-256."""
        path = self.root / rel
        entry = self.manifest.get(rel)
        if (
            entry
            and entry.get("gen") == GEN_VERSION
            and entry.get("size") == size
            and path.is_file()
            and path.stat().st_size == size
        ):
            return str(entry["sha256"])
        path.parent.mkdir(parents=True, exist_ok=True)
        sha = generate_file(path, size, seed=rel)
        self.manifest[rel] = {"size": size, "sha256": sha, "gen": GEN_VERSION}
        return sha

    def ensure_many(self, items: Sequence[tuple[str, int]]) -> dict[str, str]:
        made = {rel: self.ensure(rel, size) for rel, size in items}
        self._save()
        return made


def warm_page_cache(paths: Sequence[Path]) -> None:
    # nginx serves from the page cache in every run; read the files once so the first
    # contender of round 1 does not pay for the disk.
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass


# Every request goes to 127.0.0.1: a proxy from the environment would measure the proxy.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(extra)
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
