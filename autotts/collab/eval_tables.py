"""What ``autotts collab eval`` writes: one row per graph-level β with accuracy (± standard
error, 95 % interval), tokens, cost (with intervals) and tokens per model, as ``results.csv``
and ``results.md`` — the same files, the same column names where the ideas are the same, as
``autotts evaluate``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..utils.atomic_files import atomic_write_text

COLUMNS = (
    "graph",
    "beta",
    "env",
    "accuracy",
    "accuracy_se",
    "accuracy_low",
    "accuracy_high",
    "tokens",
    "tokens_low",
    "tokens_high",
    "cost",
    "cost_low",
    "cost_high",
    "model_tokens",
    "episodes",
    "errors",
    "status",
)


def graph_row(graph: str, beta: float, env_id: str, score) -> dict:
    """One result row of a :class:`~autotts.collab.evaluate.Score` (JSON-ready)."""
    acc = score.accuracy_interval or [None, None]
    tok = score.tokens_interval or [None, None]
    cost = score.cost_interval or [None, None]
    return {
        "graph": graph,
        "beta": beta,
        "env": env_id,
        "accuracy": score.accuracy,
        "accuracy_se": score.accuracy_se,
        "accuracy_low": acc[0],
        "accuracy_high": acc[1],
        "tokens": score.tokens,
        "tokens_low": tok[0],
        "tokens_high": tok[1],
        "cost": score.cost,
        "cost_low": cost[0],
        "cost_high": cost[1],
        "model_tokens": {m: t for m, t in score.model_tokens.items() if t},
        "episodes": score.episodes,
        "errors": score.errors,
        "status": "ok"
        if not score.errors
        else f"{score.errors} episode errors; first: {score.first_error}",
    }


def cells(row: dict) -> list[str]:
    """The row as tables print it (the graph is in the title): β, accuracy ± se, interval,
    tokens, cost, tokens per model."""
    per_model = ", ".join(f"{m} {t / 1000:.1f}k" for m, t in row["model_tokens"].items())
    return [
        f"{row['beta']:g}",
        f"{row['accuracy']:.2f} ± {row['accuracy_se']:.2f}",
        f"[{row['accuracy_low']:.1f}, {row['accuracy_high']:.1f}]",
        f"{row['tokens'] / 1000:.1f}k",
        f"{row['cost']:.3g}",
        per_model,
    ]


CELL_COLUMNS = (  # the headers of cells(): the graph is in the title
    "β",
    "accuracy % ± se",
    "95 % interval",
    "tokens",
    "cost",
    "tokens per model",
)


def results_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(dict(row, model_tokens=json.dumps(row["model_tokens"])))
    return out.getvalue()


def results_markdown(rows: list[dict], unit: str) -> str:
    title = f"{rows[0]['graph']} on {rows[0]['env']}\n\n" if rows else ""
    head = [c if c != "cost" else unit for c in CELL_COLUMNS] + ["status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        status = row["status"].replace("|", "/")
        lines.append("| " + " | ".join([*cells(row), status]) + " |")
    return title + "\n".join(lines) + "\n"


def write_results(rows: list[dict], out_dir: Path, unit: str) -> dict[str, Path]:
    """``results.csv`` and ``results.md`` in ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "csv": atomic_write_text(out_dir / "results.csv", results_csv(rows)),
        "markdown": atomic_write_text(out_dir / "results.md", results_markdown(rows, unit)),
    }


__all__ = ["COLUMNS", "cells", "graph_row", "results_csv", "results_markdown", "write_results"]
