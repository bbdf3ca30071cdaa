"""What a result was made from, recorded next to it as ``run.json``: the command line, the
autotts version and git revision, Python and platform, the seeds, and the sha256 of every
replay store read — enough to tell whether two result folders are comparable."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

from ..utils.atomic_files import atomic_write_text


@cache
def _sha256(path: str, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_digests(env_ids, env_dir=None) -> dict[str, str]:
    """``MODEL/DATASET`` → sha256 of its store, for every store the ids read (cross-model
    ids read one store per model; ids of other registered types are left out)."""
    from ..envs.stores import StoreError, find_environment

    digests = {}
    for env_id in env_ids:
        models, _, dataset = env_id.rpartition("/")
        for model in models.split("+") if ":" not in env_id else ():
            try:
                info = find_environment(f"{model}/{dataset}", env_dir)
            except StoreError:
                continue
            digests[info.env_id] = _sha256(str(info.path), info.path.stat().st_mtime_ns)
    return digests


def git_revision(directory: Path | None = None) -> str | None:
    """The checkout's commit (with ``+dirty`` when it has changes), or None outside git."""
    directory = directory or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_record(env_ids, env_dir=None, seeds: int | None = None, **extra) -> dict:
    """The provenance of a result (see the module docstring); ``extra`` is added as is."""
    from .. import __version__

    return {
        "command": sys.argv,
        "autotts_version": __version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seeds": seeds,
        "environments": list(env_ids),
        "stores_sha256": store_digests(env_ids, env_dir),
        **extra,
    }


def write_run_record(directory: str | Path, record: dict) -> Path:
    return atomic_write_text(Path(directory) / "run.json", json.dumps(record, indent=2) + "\n")


__all__ = ["git_revision", "run_record", "store_digests", "write_run_record"]
