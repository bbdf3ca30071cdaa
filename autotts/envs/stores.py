"""Replay stores: the shipped on-disk format, its validation, and where stores are found.

A replay store is one JSON file ``<MODEL>/<DATASET>.json`` holding a list of questions, each
with pre-sampled reasoning branches and the intermediate ("probe") answers revealed every
``probe_freq`` tokens (see ``environments/README.md``). An environment is addressed by its id
``MODEL/DATASET`` and looked up under an environment directory:

1. an explicit directory (``--env-dir`` on the CLI, ``env_dir=`` in the API);
2. ``$AUTOTTS_ENV_DIR``;
3. ``../shared/environments`` relative to the working directory or to the project checkout;
4. the user cache that ``autotts envs fetch`` downloads into.

Loading validates the whole file with pydantic; any problem raises :class:`StoreError` naming
the file, the question index and the field, never a traceback from deep inside.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from ..errors import BadInput

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_DIR_VARIABLE = "AUTOTTS_ENV_DIR"


class StoreError(BadInput):
    """A replay store (or an environment id) that cannot be used; the message says why."""


NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
SignalName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class QuestionRecord(BaseModel):
    """One question of a replay store, exactly as in the shipped JSON."""

    model_config = ConfigDict(extra="allow", frozen=True)

    question: str
    gold_answer: str
    probe_freq: Annotated[int, Field(gt=0, strict=True)]
    each_branch: Annotated[
        list[tuple[list[str], NonNegativeInt, str]],
        Field(min_length=1, description="[probes, branch_tokens, final_answer] per branch"),
    ]
    final_answers_trace: list[str] | None = None
    signals: dict[SignalName, list[list[float | None]]] | None = Field(
        None,
        description="optional per-interval observations by name (e.g. 'confidence'): one list "
        "per branch with one value per interval, len(probes) + 1 (null: no tokens)",
    )

    width_only: bool = Field(
        False,
        description="true for a store imported from whole samples (`autotts envs import`): "
        "branches have no probe answers, so only whole-branch reads are possible until "
        "`autotts envs probe` fills them in",
    )

    @model_validator(mode="after")
    def _signals_fit_branches(self) -> QuestionRecord:
        if self.width_only and any(probes for probes, _, _ in self.each_branch):
            raise ValueError(
                "width_only is true but some branches have probe answers: drop width_only "
                "(the store has probes) or empty the probe lists"
            )
        for name, per_branch in (self.signals or {}).items():
            if len(per_branch) != len(self.each_branch):
                raise ValueError(
                    f"signals.{name} has {len(per_branch)} branches, each_branch "
                    f"{len(self.each_branch)}: give one list per branch"
                )
            for b, (values, (probes, _, _)) in enumerate(
                zip(per_branch, self.each_branch, strict=True)
            ):
                if len(values) != len(probes) + 1:
                    raise ValueError(
                        f"signals.{name}[{b}] has {len(values)} values; branch {b} has "
                        f"{len(probes)} probes, so it needs {len(probes) + 1} (one per "
                        "interval, the last one the finishing interval)"
                    )
        return self


_STORE_ADAPTER = TypeAdapter(list[QuestionRecord])
_BRANCH_FIELDS = {0: "probes", 1: "branch_tokens", 2: "final_answer"}


def _describe_location(loc: tuple) -> str:
    """Turn a pydantic error location into 'question 3, field each_branch[17].branch_tokens'."""
    if not loc:
        return "top level (expected a JSON list of question objects)"
    parts = list(loc)
    where = f"question {parts.pop(0)}" if isinstance(parts[0], int) else "top level"
    if not parts:
        return where
    field = str(parts.pop(0))
    if field == "each_branch" and parts:
        field += f"[{parts.pop(0)}]"
        if parts and parts[0] in _BRANCH_FIELDS:
            field += f".{_BRANCH_FIELDS[parts.pop(0)]}"
    for part in parts:
        field += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"{where}, field {field}"


def load_records(path: str | Path) -> list[QuestionRecord]:
    """Read and validate a replay store file; raise :class:`StoreError` on any defect."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path}: replay store file not found") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read replay store ({exc.strerror})") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        hint = " (the file looks truncated; re-fetch it)" if exc.pos >= len(raw) - 1 else ""
        raise StoreError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}"
        ) from None
    try:
        records = _STORE_ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise StoreError(
            f"{path}: {_describe_location(tuple(first['loc']))}: "
            f"{first['msg'].removeprefix('Value error, ')}{more}"
        ) from None
    if not records:
        raise StoreError(f"{path}: the store holds no questions")
    return records


@dataclass(frozen=True)
class EnvironmentInfo:
    """Where an environment id resolves to."""

    env_id: str
    path: Path


def cache_root() -> Path:
    """Where autotts keeps what it can compute or download again: ``$AUTOTTS_CACHE_DIR``, or
    the user cache directory."""
    from platformdirs import user_cache_path

    return Path(os.environ.get("AUTOTTS_CACHE_DIR") or user_cache_path("autotts"))


def user_cache_dir() -> Path:
    """The directory ``autotts envs fetch`` downloads replay stores into."""
    return cache_root() / "environments"


def candidate_env_dirs(env_dir: str | Path | None = None) -> list[Path]:
    """Environment directories in lookup order (see the module docstring)."""
    if env_dir is not None:
        return [Path(env_dir)]
    dirs = []
    if os.environ.get(ENV_DIR_VARIABLE):
        dirs.append(Path(os.environ[ENV_DIR_VARIABLE]))
    for base in (Path.cwd(), PROJECT_ROOT):
        shared = (base / ".." / "shared" / "environments").resolve()
        if shared.is_dir() and shared not in dirs:
            dirs.append(shared)
    dirs.append(user_cache_dir())
    return dirs


def resolve_env_dir(env_dir: str | Path | None = None) -> Path:
    """The first existing environment directory, or a clear error saying how to get one."""
    dirs = candidate_env_dirs(env_dir)
    for directory in dirs:
        if directory.is_dir():
            return directory
    tried = ", ".join(str(d) for d in dirs)
    raise StoreError(
        f"no environment directory found (tried {tried}); set ${ENV_DIR_VARIABLE}, "
        "give an environment directory, or download the public stores (autotts envs fetch)"
    )


def meta_path(store: str | Path) -> Path:
    """The ``.meta.json`` written beside a store by ``build-env``, ``envs import`` and
    ``envs probe`` (how it was made)."""
    store = Path(store)
    return store.with_name(store.stem + ".meta.json")


def list_environments(env_dir: str | Path | None = None) -> list[EnvironmentInfo]:
    """All ``MODEL/DATASET`` stores under the environment directory, sorted by id."""
    root = resolve_env_dir(env_dir)
    found = [
        EnvironmentInfo(f"{path.parent.name}/{path.stem}", path)
        for path in sorted(root.glob("*/*.json"))
        if not path.name.endswith(".meta.json")  # build-env's metadata beside its store
    ]
    return found


def find_environment(env_id: str, env_dir: str | Path | None = None) -> EnvironmentInfo:
    """Resolve ``MODEL/DATASET`` to its store file, or explain which ids exist."""
    if env_id.count("/") != 1 or not all(env_id.split("/")):
        raise StoreError(f"environment id {env_id!r} is not of the form MODEL/DATASET")
    root = resolve_env_dir(env_dir)
    path = root / f"{env_id}.json"
    if not path.is_file():
        known = ", ".join(info.env_id for info in list_environments(root)) or "none"
        raise StoreError(f"unknown environment {env_id!r} in {root} (known: {known})")
    return EnvironmentInfo(env_id, path)


@lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int) -> list[QuestionRecord]:
    return load_records(path)


def load_environment_records(
    env_id: str, env_dir: str | Path | None = None
) -> list[QuestionRecord]:
    """Validated records of an environment id (cached per process while the file is unchanged)."""
    info = find_environment(env_id, env_dir)
    return _load_cached(str(info.path), info.path.stat().st_mtime_ns)


def intern_answer(text: str) -> str:
    """Answers are interned so equality checks in controllers are pointer comparisons."""
    return sys.intern(text)
