"""``autotts export RUN``: a run's winner (or any candidate) as a self-contained controller file.

Selection follows the paper: the winner is chosen on the search environments only (the
compressed β-family of the Optuna path, or the LLM path's best candidate); held-out numbers
are reported in the provenance header, never used to choose.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..results.run_directory import RunDirectory, RunError
from ..sandbox.sandboxed_evaluation import mark_untrusted
from ..utils.atomic_files import atomic_write_text
from .family import Family, family_source
from .search_space import RANGES


def provenance_header(run: RunDirectory, what: str, lines: list[str]) -> str:
    """Comment lines naming the run, its strategy and search environments, then ``lines``."""
    config = run.config
    search = config.get("search", {})
    out = [
        f"# Discovered by autotts ({config.get('strategy', '?')} path): {what}",
        f"# run: {run.path.resolve()}",
        f"# search environments: {', '.join(search.get('search_envs', []))}",
    ]
    return "\n".join(out + [f"# {line}" for line in lines])


def _curve_line(label: str, curve: list[dict]) -> str:
    return f"{label}: " + ", ".join(
        f"{p['setting']} {p['accuracy']:.2f}%@{p['tokens'] / 1000:.0f}k" for p in curve
    )


def _rename(source: str, name: str) -> str:
    """Set the controller's ``name = ...`` class attribute to ``name``."""
    pattern = re.compile(r'^(\s+name\s*=\s*)(["\']).*?\2', re.MULTILINE)
    if pattern.search(source):
        return pattern.sub(lambda m: f"{m.group(1)}{name!r}", source, count=1)
    return source


def candidate_source(run: RunDirectory, candidate: str, name: str) -> str:
    """Source of one recorded candidate (LLM-written file, or an Optuna trial's parameters)."""
    folder = run.path / "candidates" / f"{int(candidate):04d}"
    record = next((r for r in run.rounds() if r.get("candidate") == folder.name), None)
    if record is None:
        known = ", ".join(r.get("candidate", "?") for r in run.rounds()[-10:])
        raise RunError(f"{run.path}: no recorded candidate {candidate!r} (recent: {known})")
    metrics = f"search-set result: {record.get('accuracy', float('nan')):.2f}% @ {record.get('tokens', 0) / 1000:.1f}k"
    written = run.candidate_source(int(candidate))
    if written is not None:  # LLM-written: marked, so it runs sandboxed
        header = provenance_header(run, f"candidate {folder.name}", [metrics])
        source = header + "\n" + _rename(written, name)
        return mark_untrusted(source, f"written by an LLM in {run.path.resolve()}")
    params = record["params"]
    constant = Family(
        {k: v for k, v in params.items() if k not in RANGES},
        {k: [(0.0, params[k]), (1.0, params[k])] for k in RANGES},
    )
    header = provenance_header(run, f"Optuna trial {folder.name} (fixed parameters)", [metrics])
    return family_source(constant, name, header)


def winner_source(run: RunDirectory, name: str) -> str:
    """The run's selected controller with a provenance header."""
    family_file = run.path / "family" / "controller.py"
    if family_file.exists():
        summary = run.read_json("search.json")
        family = Family(
            summary["fixed"],
            {k: [tuple(p) for p in v] for k, v in summary["knots"].items()},
            switches=[(b, choices) for b, choices in summary.get("switches", [])],
        )
        how = "Optuna + racing" if run.stage_done("race") else "Optuna + compression"
        lines = [_curve_line("search set (means)", summary["winner"])]
        if (run.path / "heldout.json").exists():
            heldout = run.read_json("heldout.json")
            lines.append(_curve_line("held-out (means)", heldout["winner"]))
            lines.append(f"held-out environments: {', '.join(heldout['envs'])}")
        return family_source(family, name, provenance_header(run, f"β-family ({how})", lines))
    best = run.stage_done("best")
    if best is None:
        raise RunError(
            f"{run.path}: the run has no winner yet (no family and no best candidate); "
            "finish the run first, or export one of its candidates by round id"
        )
    return candidate_source(run, best["candidate"], name)


def export_controller(run_path: str | Path, out: str | Path, candidate: str | None = None) -> Path:
    run = RunDirectory.open(run_path)
    out = Path(out)
    name = out.stem.replace("_", "-")
    source = candidate_source(run, candidate, name) if candidate else winner_source(run, name)
    return atomic_write_text(out, source)
