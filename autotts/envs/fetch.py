"""``autotts envs fetch``: download the public replay stores into the user cache.

The manifest (``data/manifest.json``) pins the AutoTTS repository commit and lists the sha256
of every store. Downloads go to ``<file>.part`` and resume with an HTTP ``Range`` request after
a dropped connection (or on the next run); a file is renamed into place only once its checksum
matches, so a corrupted download never masquerades as a store. Files already present with the
right checksum are skipped.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException, IncompleteRead
from pathlib import Path

from ..errors import RunFailure
from .stores import user_cache_dir

MANIFEST_FILE = Path(__file__).resolve().parents[1] / "data" / "manifest.json"
CHUNK = 1 << 16


class FetchError(RunFailure):
    """A store that could not be downloaded or verified; the message names it."""


@dataclass
class FetchOutcome:
    name: str
    status: str  # "downloaded", "present", or "failed: ..."
    bytes: int = 0


def load_manifest() -> dict:
    return json.loads(MANIFEST_FILE.read_text())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its current size)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part file is complete
            return
        raise
    with response:
        mode = "ab" if have and response.status == 206 else "wb"
        expected = response.length  # None when the server sends no Content-Length
        received = 0
        with part.open(mode) as out:
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
        if expected is not None and received < expected:
            raise IncompleteRead(b"", expected - received)  # dropped mid-transfer: resume


def fetch_file(
    name: str,
    expected: str,
    base_url: str,
    dest: Path,
    retries: int = 3,
    timeout: float = 60,
    backoff_s: float = 1.0,
) -> FetchOutcome:
    """Fetch one manifest entry into ``dest``; raise :class:`FetchError` on failure. A dropped
    or failed transfer is retried ``retries`` times, waiting ``backoff_s``, then twice as long
    each time (at most 30 s), and resumes where it stopped."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    target = dest / name
    if target.is_file() and sha256_of(target) == expected:
        return FetchOutcome(name, "present", target.stat().st_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    url = base_url.rstrip("/") + "/" + name
    attempts = Retrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=backoff_s, max=30),
        retry=retry_if_exception(_transient),
        reraise=True,
    )
    try:
        for attempt in attempts:
            with attempt:
                _download(url, part, timeout)
    except (OSError, HTTPException) as exc:  # dropped connection, timeout, HTTP error
        env_id = name.removesuffix(".json")
        if isinstance(exc, urllib.error.HTTPError) and exc.code == 404:
            raise FetchError(f"{env_id}: not found at {url}") from None
        raise FetchError(
            f"{env_id}: download from {url} failed after {retries + 1} tries "
            f"({type(exc).__name__}: {exc}); run again to resume"
        ) from None
    actual = sha256_of(part)
    if actual != expected:
        part.unlink()
        raise FetchError(
            f"{name.removesuffix('.json')}: checksum mismatch (expected sha256 {expected}, got {actual}); the corrupted download was removed, run again"
        )
    part.replace(target)
    return FetchOutcome(name, "downloaded", target.stat().st_size)


def _transient(exc: BaseException) -> bool:
    """Worth another try: anything but a missing file."""
    missing = isinstance(exc, urllib.error.HTTPError) and exc.code == 404
    return isinstance(exc, OSError | HTTPException) and not missing


def fetch_environments(
    dest: Path | None = None,
    base_url: str | None = None,
    only: list[str] | None = None,
    on_file: Callable[[FetchOutcome], None] | None = None,
) -> list[FetchOutcome]:
    """Fetch every store of the manifest (or the ``only`` ids); failures are reported per file
    and do not stop the others."""
    manifest = load_manifest()
    dest = Path(dest) if dest else user_cache_dir()
    base_url = base_url or manifest["base_url"]
    wanted = {f"{env_id}.json" for env_id in only} if only else None
    if wanted and (unknown := wanted - set(manifest["files"])):
        ids = [name.removesuffix(".json") for name in manifest["files"]]
        missing = [name.removesuffix(".json") for name in sorted(unknown)]
        raise FetchError(f"not in the manifest: {', '.join(missing)} (known ids: {', '.join(ids)})")
    outcomes = []
    for name, expected in manifest["files"].items():
        if wanted and name not in wanted:
            continue
        try:
            outcome = fetch_file(name, expected, base_url, dest)
        except FetchError as exc:
            outcome = FetchOutcome(name, f"failed: {exc}")
        outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    return outcomes
