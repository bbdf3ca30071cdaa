"""Writing evaluation results: the results table (CSV and Markdown, optionally next to the
published reference cells), per-question detail, traces, and the accuracy-vs-tokens plot
(log-x, one curve per controller, one panel per environment). Every function takes an
:class:`~autotts.results.evaluation_report.EvaluationReport` (``report``) or one of its rows (``row``)."""

from __future__ import annotations

import csv
import io
import json
import math
from functools import cache
from pathlib import Path

from ..utils.atomic_files import atomic_write_text
from .traces import write_jsonl

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "data" / "reference.json"


@cache
def reference_cells() -> dict[tuple[str, str, str], tuple[float, float]]:
    """Published (accuracy %, tokens k) keyed by (controller, setting, env id)."""
    cells = json.loads(REFERENCE_FILE.read_text())["cells"]
    return {
        (c["controller"], c["setting"], c["env"]): (c["accuracy"], c["tokens_k"]) for c in cells
    }


def reference_for(row) -> tuple[float, float] | None:
    return reference_cells().get((row.controller, row.setting, row.env_id))


def _status_cell(status: str, width: int = 80) -> str:
    return status if len(status) <= width else status[: width - 1] + "…"


def markdown_table(report, with_reference: bool = False) -> str:
    """The results as a Markdown table (optionally next to the published reference cells)."""
    head = ["controller", "setting", "environment", "accuracy % ± se", "95 % interval", "tokens"]
    if with_reference:
        head += ["reference acc", "reference tokens", "match"]
    head.append("status")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        cells = row.cells()
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


def matches_reference(row) -> bool:
    """Accuracy within ±0.01 points and tokens within ±0.1k of the published cell."""
    ref = reference_for(row)
    if ref is None:
        return False
    return (
        abs(round(row.accuracy, 2) - ref[0]) <= 0.01 + 1e-9
        and abs(round(row.tokens) / 1000 - ref[1]) <= 0.1 + 1e-9
    )


def results_csv(report) -> str:
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


def summary_csv(summaries: list[dict]) -> str:
    """The curve summaries (see :mod:`autotts.results.curve_summaries`) as CSV."""
    out = io.StringIO()
    writer = csv.writer(out)
    head = ["controller", "env", "settings", "auc", "hypervolume", "hypervolume_reference"]
    head += ["arise", "tokens_to_match"]
    writer.writerow([*head, "tokens_to_match_low", "tokens_to_match_high"])
    for s in summaries:
        interval = s["tokens_to_match_interval"] or ["", ""]
        writer.writerow([*(s[k] if s[k] is not None else "" for k in head), *interval])
    return out.getvalue()


def per_question_csv(report) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["controller", "setting", "env", "question", "accuracy", "mean_tokens"])
    for q in report.per_question():
        writer.writerow(
            [
                q["controller"],
                q["setting"],
                q["env"],
                q["question"],
                f"{q['accuracy']:.2f}",
                f"{q['mean_tokens']:.1f}",
            ]
        )
    return out.getvalue()


def curves_figure(report):
    """Accuracy vs mean tokens (log x), one curve per controller with a band for the 95 %
    interval of its accuracy, one panel per environment, as a matplotlib ``Figure`` (not attached to pyplot: close nothing, show it or save it)."""
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
            rows = sorted(
                (
                    r
                    for r in report.rows
                    if r.env_id == env_id
                    and r.controller == name
                    and r.episodes
                    and r.status == "ok"  # a configuration with errors is no valid point
                    and not math.isnan(r.tokens)
                ),
                key=lambda r: r.tokens,
            )
            if not rows:
                continue
            xs = [r.tokens for r in rows]
            (line,) = ax.plot(
                xs,
                [r.accuracy for r in rows],
                marker=markers[k % len(markers)],
                ms=4,
                lw=1.5,
                label=name,
            )
            bands = [r.accuracy_estimate for r in rows]
            if all(bands):  # the 95 % interval of each point's accuracy
                low, high = [b.low for b in bands], [b.high for b in bands]
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, lw=0)
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


def plot_curves(report, stem: Path) -> list[Path]:
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
    report, out_dir: str | Path, with_reference: bool = False, baseline=None
) -> dict[str, Path]:
    """Write every output of an evaluation into ``out_dir``; return the paths by kind.
    ``baseline``: a report with SC@64 on the same environments and seeds, for the summaries'
    tokens to match SC@64 when the run lacks it (:mod:`autotts.evaluation.sc64_cache`)."""
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
    from .curve_summaries import curve_summaries

    summaries = curve_summaries(report, reference=baseline)
    if summaries:
        paths["summary"] = atomic_write_text(out / "summary.csv", summary_csv(summaries))
    if any(r.episodes for r in report.rows):
        png, svg = plot_curves(report, out / "curves")
        paths["plot_png"], paths["plot_svg"] = png, svg
    return paths
