"""Evaluation results and their outputs: :class:`EvaluationReport` (rows, per-question detail,
traces), the results table (CSV + Markdown), and the accuracy-vs-tokens plot (log-x, one curve
per controller, one panel per environment)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .files import atomic_write_text
from .specs import RunConfig
from .traces import write_jsonl


@dataclass
class UnitResult:
    """Per-question aggregates of one (config, environment, question block) unit."""

    config: RunConfig
    env_id: str
    questions: list[int]
    correct: list[int]  # per question: number of correct seeds
    tokens: list[int]  # per question: summed tokens over seeds
    episodes: int = 0
    errors: int = 0
    first_error: str | None = None
    load_error: str | None = None
    traces: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Row:
    """One line of the results table."""

    controller: str
    setting: str
    env_id: str
    accuracy: float  # percent, averaged over questions and seeds
    tokens: float  # mean tokens per question
    episodes: int
    errors: int
    status: str
    seconds: float
    config: RunConfig

    @property
    def tokens_k(self) -> str:
        """Mean tokens in k as the paper prints them (rounded to whole tokens first)."""
        if self.tokens != self.tokens:  # NaN: nothing ran
            return "-"
        return "%.1fk" % (round(self.tokens) / 1000)


@dataclass
class EvaluationReport:
    """All results of one evaluation: ``rows`` (one per configuration × environment),
    ``units`` (per-question detail and traces), the seeds and the wall time.

    In a notebook: ``report`` displays as a table; ``report.per_question()`` gives the
    per-question accuracies; ``report.to_csv(path)``, ``report.plot(path)`` and
    ``report.save(directory)`` write the same files ``autotts evaluate`` writes."""

    rows: list[Row]
    units: list[UnitResult]
    seeds: int
    seconds: float

    def row(self, name: str, env_id: str, setting: str | None = None) -> Row:
        for row in self.rows:
            if row.controller == name and row.env_id == env_id and setting in (None, row.setting):
                return row
        raise KeyError(f"no result for {name} {setting or ''} on {env_id}")

    def per_question(self) -> list[dict]:
        """One dict per (configuration, environment, question): ``accuracy`` (percent of
        seeds correct) and ``mean_tokens``."""
        return [
            {
                "controller": unit.config.name,
                "setting": unit.config.setting,
                "env": unit.env_id,
                "question": q,
                "accuracy": 100 * correct / self.seeds,
                "mean_tokens": tokens / self.seeds,
            }
            for unit in self.units
            if not unit.load_error
            for q, correct, tokens in zip(unit.questions, unit.correct, unit.tokens, strict=True)
        ]

    def to_csv(self, path: str | Path | None = None) -> str:
        """The results table as CSV text, also written (atomically) to ``path`` if given."""
        text = results_csv(self)
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    def to_markdown(self, with_reference: bool = False) -> str:
        return markdown_table(self, with_reference)

    def plot(self, path: str | Path | None = None):
        """The accuracy-vs-tokens figure (a matplotlib ``Figure``); with ``path``, also saved
        there (``.png``/``.svg``/``.pdf`` by its suffix)."""
        figure = curves_figure(self)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=150)
        return figure

    def save(self, out_dir: str | Path, with_reference: bool = False) -> dict[str, Path]:
        """Write every output (tables, per-question CSV, traces, plots) into ``out_dir``."""
        return write_outputs(self, out_dir, with_reference)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def mean_over_envs(points: Iterable[Sequence[float]]) -> tuple[float, float]:
    """Mean accuracy and mean tokens of per-environment ``(accuracy, tokens)`` points: every
    environment weighs the same, as in the paper's averages."""
    points = list(points)
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def mean_curve(rows: Iterable[Row]) -> list[dict]:
    """One point per configuration (in order) averaged over its environments: ``setting``,
    ``beta``, ``accuracy``, ``tokens``, ``per_env`` (``[accuracy, tokens]`` by id), ``status``."""
    groups: dict[RunConfig, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.config, []).append(row)
    curve = []
    for config, mine in groups.items():
        accuracy, tokens = mean_over_envs((r.accuracy, r.tokens) for r in mine)
        curve.append(
            {
                "setting": config.setting,
                "beta": config.beta,
                "accuracy": accuracy,
                "tokens": tokens,
                "per_env": {r.env_id: [r.accuracy, r.tokens] for r in mine},
                "status": sorted({r.status for r in mine}),
            }
        )
    return curve


def cost_drops(betas: Sequence[float], tokens: Sequence[float], tolerance: float) -> list[str]:
    """The β contract: where mean tokens fall (beyond ``tolerance``, relative) as β grows."""
    return [
        f"β {betas[i - 1]:g}→{betas[i]:g}: {tokens[i - 1]:,.0f}→{tokens[i]:,.0f} tokens"
        for i in range(1, len(tokens))
        if tokens[i] < tokens[i - 1] * (1 - tolerance)
    ]


REFERENCE_FILE = Path(__file__).with_name("data") / "reference.json"


@cache
def reference_cells() -> dict[tuple[str, str, str], tuple[float, float]]:
    """Published (accuracy %, tokens k) keyed by (controller, setting, env id)."""
    cells = json.loads(REFERENCE_FILE.read_text())["cells"]
    return {
        (c["controller"], c["setting"], c["env"]): (c["accuracy"], c["tokens_k"]) for c in cells
    }


def reference_for(row: Row) -> tuple[float, float] | None:
    return reference_cells().get((row.controller, row.setting, row.env_id))


def _status_cell(status: str, width: int = 80) -> str:
    return status if len(status) <= width else status[: width - 1] + "…"


def markdown_table(report: EvaluationReport, with_reference: bool = False) -> str:
    """The results as a Markdown table (optionally next to the published reference cells)."""
    head = ["controller", "setting", "environment", "accuracy %", "tokens"]
    if with_reference:
        head += ["reference acc", "reference tokens", "match"]
    head.append("status")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        cells = [row.controller, row.setting, row.env_id, f"{row.accuracy:.2f}", row.tokens_k]
        if with_reference:
            ref = reference_for(row)
            if ref is None:
                cells += ["", "", ""]
            else:
                cells += [
                    f"{ref[0]:.2f}",
                    f"{ref[1]:.1f}k",
                    "yes" if matches_reference(row) else "NO",
                ]
        cells.append(_status_cell(row.status).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def matches_reference(row: Row) -> bool:
    """Accuracy within ±0.01 points and tokens within ±0.1k of the published cell."""
    ref = reference_for(row)
    if ref is None:
        return False
    return (
        abs(round(row.accuracy, 2) - ref[0]) <= 0.01 + 1e-9
        and abs(round(row.tokens) / 1000 - ref[1]) <= 0.1 + 1e-9
    )


def results_csv(report: EvaluationReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "controller",
            "setting",
            "env",
            "accuracy",
            "mean_tokens",
            "episodes",
            "errors",
            "seconds",
            "status",
        ]
    )
    for r in report.rows:
        writer.writerow(
            [
                r.controller,
                r.setting,
                r.env_id,
                f"{r.accuracy:.4f}",
                f"{r.tokens:.2f}",
                r.episodes,
                r.errors,
                f"{r.seconds:.2f}",
                r.status,
            ]
        )
    return out.getvalue()


def per_question_csv(report: EvaluationReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["controller", "setting", "env", "question", "accuracy", "mean_tokens"])
    for unit in report.units:
        if unit.load_error:
            continue
        seeds = report.seeds
        for q, correct, tokens in zip(unit.questions, unit.correct, unit.tokens, strict=True):
            writer.writerow(
                [
                    unit.config.name,
                    unit.config.setting,
                    unit.env_id,
                    q,
                    f"{100 * correct / seeds:.2f}",
                    f"{tokens / seeds:.1f}",
                ]
            )
    return out.getvalue()


def curves_figure(report: EvaluationReport):
    """Accuracy vs mean tokens (log x), one curve per controller, one panel per environment,
    as a matplotlib ``Figure`` (not attached to pyplot: close nothing, show it or save it)."""
    from matplotlib.figure import Figure

    env_ids = list(dict.fromkeys(r.env_id for r in report.rows))
    controllers = list(dict.fromkeys(r.controller for r in report.rows))
    cols = min(4, len(env_ids))
    nrows = math.ceil(len(env_ids) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    markers = "osD^vP*Xh<>"
    for ax, env_id in zip(axes.flat, env_ids, strict=False):
        for k, name in enumerate(controllers):
            pts = sorted(
                (r.tokens, r.accuracy)
                for r in report.rows
                if r.env_id == env_id
                and r.controller == name
                and r.episodes
                and not math.isnan(r.tokens)
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker=markers[k % len(markers)], ms=4, lw=1.5, label=name)
        ax.set_xscale("log")
        ax.set_title(env_id, fontsize=10)
        ax.set_xlabel("mean tokens per question")
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(env_ids) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.07 if nrows == 1 else 0.04, 1, 1))
    return fig


def plot_curves(report: EvaluationReport, stem: Path) -> list[Path]:
    """Write :func:`curves_figure` as ``stem.png`` and ``stem.svg``."""
    fig = curves_figure(report)
    paths = []
    for ext in ("png", "svg"):
        path = stem.with_suffix(f".{ext}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
        paths.append(path)
    return paths


def write_outputs(
    report: EvaluationReport, out_dir: str | Path, with_reference: bool = False
) -> dict[str, Path]:
    """Write every output of an evaluation into ``out_dir``; return the paths by kind."""
    out = Path(out_dir)
    paths = {
        "csv": out / "results.csv",
        "markdown": out / "results.md",
        "questions": out / "per_question.csv",
    }
    atomic_write_text(paths["csv"], results_csv(report))
    atomic_write_text(paths["markdown"], markdown_table(report, with_reference))
    atomic_write_text(paths["questions"], per_question_csv(report))
    groups: dict[tuple, list[dict]] = {}
    for unit in report.units:
        groups.setdefault((unit.config.name, unit.config.setting, unit.env_id), []).extend(
            unit.traces
        )
    for (name, setting, env_id), records in groups.items():
        if records:
            slug = (
                f"{name}__{setting}__{env_id}".replace("/", "_")
                .replace(", ", "_")
                .replace("β", "beta")
            )
            write_jsonl(out / "traces" / f"{slug}.jsonl", records)
    paths["traces"] = out / "traces"
    if any(r.episodes for r in report.rows):
        png, svg = plot_curves(report, out / "curves")
        paths["plot_png"], paths["plot_svg"] = png, svg
    return paths
