"""Evaluation results and their outputs: :class:`EvaluationReport` (rows, per-question detail,
traces), the results table (CSV + Markdown), and the accuracy-vs-tokens plot (log-x, one curve
per controller, one panel per environment)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from .files import atomic_write_text
from .specs import RunConfig
from .stats import Estimate, Verdict, paired_difference, superiority
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
    # per question slot, per seed (in seed order): 1/0 correct, and tokens — for intervals
    seed_correct: list[list[int]] = field(default_factory=list)
    seed_tokens: list[list[int]] = field(default_factory=list)

    @classmethod
    def empty(cls, config: RunConfig, env_id: str, questions, seeds: int) -> UnitResult:
        n = len(questions)
        unit = cls(config, env_id, list(questions), [0] * n, [0] * n)
        unit.seed_correct = [[0] * seeds for _ in range(n)]
        unit.seed_tokens = [[0] * seeds for _ in range(n)]
        return unit

    def record(self, slot: int, seed: int, correct: bool, tokens: int) -> None:
        """Count one finished episode of question ``questions[slot]``."""
        self.correct[slot] += correct
        self.tokens[slot] += tokens
        self.seed_correct[slot][seed] = int(correct)
        self.seed_tokens[slot][seed] = tokens


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
    accuracy_estimate: Estimate | None = None  # percent: mean, standard error, 95 % interval
    tokens_estimate: Estimate | None = None

    @property
    def accuracy_text(self) -> str:
        """``84.27 ± 0.52`` (accuracy and its standard error)."""
        if self.accuracy_estimate is None:
            return f"{self.accuracy:.2f}"
        return f"{self.accuracy:.2f} ± {self.accuracy_estimate.se:.2f}"

    @property
    def interval_text(self) -> str:
        """The accuracy's 95 % interval, ``[83.2, 85.3]``."""
        e = self.accuracy_estimate
        return "-" if e is None else f"[{e.low:.1f}, {e.high:.1f}]"

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

    def outcomes(self, row: Row) -> tuple[list[list[int]], list[list[int]]]:
        """Per question, per seed: whether the episode was correct (1/0), and its tokens."""
        mine = [u for u in self.units if u.config == row.config and u.env_id == row.env_id]
        return (
            [seeds for u in mine for seeds in u.seed_correct],
            [seeds for u in mine for seeds in u.seed_tokens],
        )

    def compare(self, candidate: Row, baseline: Row) -> Verdict:
        """Paired comparison of two rows' accuracies on the same environment (same questions,
        same seeds): ``beats`` / ``worse`` only when the 95 % interval of the difference
        excludes zero, else ``no significant difference``."""
        if candidate.env_id != baseline.env_id:
            raise ValueError("a paired comparison needs both rows on the same environment")
        a, b = self.outcomes(candidate)[0], self.outcomes(baseline)[0]
        return superiority(
            paired_difference([100.0 * np.asarray(a, float)], [100.0 * np.asarray(b, float)])
        )

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
    head = ["controller", "setting", "environment", "accuracy % ± se", "95 % interval", "tokens"]
    if with_reference:
        head += ["reference acc", "reference tokens", "match"]
    head.append("status")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        cells = [
            row.controller,
            row.setting,
            row.env_id,
            row.accuracy_text,
            row.interval_text,
            row.tokens_k,
        ]
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
            "accuracy_se",
            "accuracy_low",
            "accuracy_high",
            "mean_tokens",
            "tokens_low",
            "tokens_high",
            "episodes",
            "errors",
            "seconds",
            "status",
        ]
    )
    for r in report.rows:
        acc, tok = r.accuracy_estimate, r.tokens_estimate
        writer.writerow(
            [
                r.controller,
                r.setting,
                r.env_id,
                f"{r.accuracy:.4f}",
                *_cells(acc and (acc.se, acc.low, acc.high), 3, "{:.4f}"),
                f"{r.tokens:.2f}",
                *_cells(tok and (tok.low, tok.high), 2, "{:.2f}"),
                r.episodes,
                r.errors,
                f"{r.seconds:.2f}",
                r.status,
            ]
        )
    return out.getvalue()


def _cells(values, width: int, form: str) -> list[str]:
    """Formatted ``values``, or ``width`` empty cells where nothing was measured."""
    return [form.format(v) for v in values] if values else [""] * width


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
                and r.status == "ok"  # a configuration with errors is no valid point
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
