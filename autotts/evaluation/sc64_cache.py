"""SC@64 on replay environments, evaluated once per (store, seeds) and kept on disk: the
baseline a run's summaries measure "tokens to match" against when SC@64 is not in the run
(``autotts evaluate cmc`` alone still says how many tokens CMC needs to match SC@64).

Entries live under ``$AUTOTTS_CACHE_DIR`` (default: the user cache directory) in
``baselines/``, one JSON file per store digest, seed count and answer grouping; a store that
changes gets a new digest, so a stale entry is never read.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..envs.stores import cache_root
from ..loading.run_configs import RunConfig
from ..results.evaluation_report import EvaluationReport, UnitResult
from ..results.provenance import store_digests
from ..utils.atomic_files import atomic_write_text

VERSION = 1  # of the entry format: bump when it changes
SC64 = RunConfig("sc", overrides=(("n", 64),))


def _entry(digest: str, seeds: int, canonicalize: bool) -> Path:
    grouping = "canonical" if canonicalize else "exact"
    return (
        cache_root() / "baselines" / f"sc64-{digest[:24]}-{seeds}seeds-{grouping}-v{VERSION}.json"
    )


def _read(path: Path, env_id: str, seeds: int) -> UnitResult | None:
    try:
        data = json.loads(path.read_text())
        unit = UnitResult.empty(SC64, env_id, data["questions"], seeds)
        unit.seed_correct, unit.seed_tokens = data["seed_correct"], data["seed_tokens"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or half-written: evaluated again
    unit.episodes = len(unit.questions) * seeds
    return unit


def sc64_report(env_ids, seeds: int, env_dir=None, canonicalize: bool = False) -> EvaluationReport:
    """SC@64 on ``env_ids`` with ``seeds`` seeds: one row and one unit per environment, read
    from the cache where it holds them, evaluated (and kept) where not."""
    from .evaluator import evaluate, summarise_units

    env_ids = list(env_ids)
    digests = store_digests(env_ids, env_dir)
    units = {}
    for env_id in env_ids:
        if env_id in digests:
            units[env_id] = _read(_entry(digests[env_id], seeds, canonicalize), env_id, seeds)
    missing = [env_id for env_id in env_ids if units.get(env_id) is None]
    if missing:
        fresh = evaluate(
            [SC64], missing, seeds=seeds, env_dir=env_dir, trace_seeds=0, canonicalize=canonicalize
        )
        for env_id in missing:
            blocks = sorted(
                (u for u in fresh.units if u.env_id == env_id), key=lambda u: u.questions[0]
            )
            unit = UnitResult.empty(SC64, env_id, [q for u in blocks for q in u.questions], seeds)
            unit.seed_correct = [row for u in blocks for row in u.seed_correct]
            unit.seed_tokens = [row for u in blocks for row in u.seed_tokens]
            unit.episodes = sum(u.episodes for u in blocks)
            units[env_id] = unit
            if env_id in digests and not any(u.errors or u.load_error for u in blocks):
                record = {k: getattr(unit, k) for k in ("questions", "seed_correct", "seed_tokens")}
                atomic_write_text(_entry(digests[env_id], seeds, canonicalize), json.dumps(record))
    ordered = [units[env_id] for env_id in env_ids]
    return EvaluationReport(summarise_units(ordered, [SC64], env_ids), ordered, seeds, 0.0)


def sc64_for(report, env_dir=None, canonicalize: bool = False) -> EvaluationReport | None:
    """SC@64 on the replay environments of ``report`` that have a curve (a controller with two
    settings or more) but no SC@64 row, with the report's seeds; ``None`` when none needs it."""
    from ..results.curve_summaries import BASELINE

    needed = []
    for env_id in report.token_ceilings:  # replay stores
        rows = [r for r in report.rows if r.env_id == env_id and r.episodes]
        names = [r.controller for r in rows]
        has_curve = any(names.count(name) > 1 for name in set(names))
        has_sc64 = any((r.controller, r.setting) == BASELINE for r in rows)
        if has_curve and not has_sc64:
            needed.append(env_id)
    return sc64_report(needed, report.seeds, env_dir, canonicalize) if needed else None


__all__ = ["SC64", "sc64_for", "sc64_report"]
