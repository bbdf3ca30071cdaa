"""A collaboration run as ``report.md`` and ``frontier.png``: accuracy against cost on the
search and held-out datasets, the searched graphs against the single-model envelope, the
verdict on the +2-point target, and the search trajectory."""

from __future__ import annotations

import math
from pathlib import Path

from ..results.run_directory import RunDirectory, RunError
from ..utils.atomic_files import atomic_write_text
from .frontier import envelope, pareto
from .search_run import best_gain

TARGET_GAIN = 2.0


def _plot(final: dict, path: Path, unit: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = final["datasets"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (role, data) in zip(axes.flat, panels.items(), strict=True):
        models = sorted({p["model"] for p in data["single"]})
        for i, model in enumerate(models):
            mine = [p for p in data["single"] if p["model"] == model]
            stairs = envelope(mine)
            ax.plot(*zip(*stairs, strict=True), "-", color=f"C{i}", alpha=0.45, lw=1, label=model)
        stairs = envelope(data["single"])
        ax.step(*zip(*stairs, strict=True), where="post", color="k", lw=1.6,
                label="best single model")  # fmt: skip
        for key, marker, color, label in (
            ("fixed", "s", "C6", "fixed graphs"),
            ("searched", "*", "C3", "searched graphs"),
        ):
            points = data[key]
            if not points:
                continue
            costs, accuracies = [p["cost"] for p in points], [p["accuracy"] for p in points]
            ax.scatter(costs, accuracies, marker=marker, color=color, s=46, zorder=3, label=label)
            if all(p.get("accuracy_interval") for p in points):  # 95 % intervals
                below = [p["accuracy"] - p["accuracy_interval"][0] for p in points]
                above = [p["accuracy_interval"][1] - p["accuracy"] for p in points]
                ax.errorbar(costs, accuracies, yerr=[below, above], fmt="none", ecolor=color,
                            alpha=0.5, lw=1, zorder=2)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(f"mean {unit} per question")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{data['dataset']} ({'search' if role == 'search' else 'held out'})")
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(frameon=False, fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _interval(values: list[float] | None, signed: bool = False) -> str:
    if not values:
        return "-"
    low, high = values
    return f"[{low:+.2f}, {high:+.2f}]" if signed else f"[{low:.1f}, {high:.1f}]"


def accuracy_cells(p: dict) -> str:
    """``accuracy ± se | [low, high]`` (runs recorded before intervals: ``accuracy | -``)."""
    se = p.get("accuracy_se")
    text = f"{p['accuracy']:.2f}" + ("" if se is None else f" ± {se:.2f}")
    return f"{text} | {_interval(p.get('accuracy_interval'))}"


def _cells(p: dict, key: str = "") -> str:
    base, gain = p[f"single_best{key}"], p[f"gain{key}"]
    if not math.isfinite(base):
        return "— (cheaper than all) | — | —"
    return f"{base:.2f} | {gain:+.2f} | {_interval(p.get(f'gain{key}_interval'), signed=True)}"


def _table(points: list[dict], unit: str) -> list[str]:
    chosen = bool(points) and "gain_chosen_on_search" in points[0]
    head = (
        f"| graph | accuracy % ± se | 95% interval | {unit} | tokens "
        "| best single model at ≤ that cost | gain | gain 95% interval (paired) |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    if chosen:
        head += " same, configurations chosen on the search set | gain | interval |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for p in sorted(points, key=lambda p: p["cost"]):
        row = (
            f"| `{p['label']}` | {accuracy_cells(p)} | {p['cost']:.3g} | "
            f"{p['tokens'] / 1000:.1f}k | {_cells(p)} |"
        )
        lines.append(row + (f" {_cells(p, '_chosen_on_search')} |" if chosen else ""))
    return lines


def _gain_words(point: dict, key: str = "") -> str:
    """The target and significance of a gain, in words the interval supports."""
    gain, interval = point[f"gain{key}"], point.get(f"gain{key}_interval")
    met = "meets" if gain >= TARGET_GAIN else "does not meet"
    if not interval:
        return f"{met} the +{TARGET_GAIN:g} target on the means (no interval recorded)"
    low, high = interval
    if low >= TARGET_GAIN:
        shown = f"the interval shows at least +{TARGET_GAIN:g}"
    elif low > 0:
        shown = "beats the best single model (interval above 0), not shown to reach the target"
    elif high < 0:
        shown = "worse than the best single model (interval below 0)"
    else:
        shown = "no significant difference from the best single model"
    interval = f"95% interval [{low:+.2f}, {high:+.2f}]"
    return f"{met} the +{TARGET_GAIN:g} target on the means; {interval}: {shown}"


def verdict(final: dict) -> list[str]:
    """Whether a searched graph beats the single-model envelope by ≥ 2 points somewhere."""
    out = []
    for role, data in final["datasets"].items():
        best = best_gain(data["searched"])
        fixed = best_gain(data["fixed"])
        name = f"{data['dataset']} ({'search' if role == 'search' else 'held out'})"
        if best is None:
            out.append(f"- {name}: no searched graph was evaluated.")
            continue
        line = (
            f"- {name}: largest gain of a searched graph {best['gain']:+.2f} points "
            f"(`{best['label']}`, {best['accuracy']:.2f}% at {best['cost']:.3g} vs "
            f"{best['single_best']:.2f}%); {_gain_words(best)}"
            + (f"; best fixed graph {fixed['gain']:+.2f} (`{fixed['label']}`)" if fixed else "")
        )
        chosen = best_gain(data["searched"], "_chosen_on_search")
        if chosen is not None:
            line += (
                f". Against the single-model configurations chosen on the search set: "
                f"{chosen['gain_chosen_on_search']:+.2f} (`{chosen['label']}`; "
                f"{_gain_words(chosen, '_chosen_on_search')})"
            )
        out.append(line + ".")
    return out


def render_collab_report(run: RunDirectory) -> dict[str, Path]:
    try:
        final = run.read_json("final.json")
    except FileNotFoundError:
        raise RunError(
            f"{run.path}: the final evaluation has not run yet; resume the run to finish it"
        ) from None
    settings = final["settings"]
    unit = "FLOPs" if final.get("unit", "flops") == "flops" else "$"
    figure = _plot(final, run.path / "frontier.png", unit)
    evaluations = run.records("evaluations.jsonl")
    lines = [
        f"# Collaboration search: {settings.get('strategy', settings.get('method'))} on {settings['dataset']}",
        "",
        f"Budget {settings['budget']:.3g} {unit} per question; {len(evaluations)} graphs "
        f"evaluated at {settings['seeds']} seeds while searching; final numbers at "
        f"{settings['final_seeds']} seeds. Searched graphs are the search's Pareto set, chosen "
        f"on {settings['dataset']} only; {settings['heldout']} is held out.",
        "",
        "## Verdict (target: ≥ +2 points over the best single model at equal cost)",
        "",
        *verdict(final),
        "",
        f"![frontier]({figure.name})",
        "",
    ]
    for role, data in final["datasets"].items():
        title = "search set" if role == "search" else "held out"
        lines += [f"## {data['dataset']} ({title})", "", "### Searched graphs", ""]
        lines += _table(data["searched"], unit)
        lines += ["", "### Fixed graphs (agents/graphs)", ""]
        lines += _table(data["fixed"], unit)
        lines += ["", "### Best single-model envelope", ""]
        lines += [f"| point | accuracy % ± se | 95% interval | {unit} |", "|---|---:|---:|---:|"]
        for p in pareto(data["single"]):
            lines.append(f"| {p['label']} | {accuracy_cells(p)} | {p['cost']:.3g} |")
        lines.append("")
    if final.get("best"):
        lines += [
            "## Exported",
            "",
            f"`best_graph.yaml` / `best_graph.py`: `{final['best']['label']}`",
            "",
        ]
    report = atomic_write_text(run.path / "report.md", "\n".join(lines))
    return {"markdown": report, "figure": figure}


__all__ = ["render_collab_report", "verdict"]
