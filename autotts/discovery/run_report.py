"""``autotts report RUN``: a discovery run as Markdown and HTML, with two figures.

- the trajectory: every candidate in the accuracy-vs-tokens plane with the Pareto front,
  and the front's hypervolume after each round;
- the final scaling curves against SC@64 and CMC on the search and held-out environments;
- the winning controller's code.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..results.run_directory import RunDirectory
from ..results.stats import hypervolume, pareto_front
from ..utils.atomic_files import atomic_write_text


def round_points(round_: dict) -> list[tuple[float, float]]:
    """The ``(tokens, accuracy)`` points a round contributed: an LLM candidate's whole β
    curve, a trial's one point, nothing for a rejected round."""
    if round_.get("curve") and round_.get("status", "ok") == "ok":
        return [(tokens, accuracy) for _, accuracy, tokens in round_["curve"]]
    if round_.get("accuracy") is None or round_.get("tokens") is None:
        return []
    return [(round_["tokens"], round_["accuracy"])]


def front_over_rounds(rounds: list[dict]) -> dict:
    """The Pareto front of every round's points and its hypervolume after each round (one
    reference for all rounds: 1.1 × the most tokens any round spent, so the values
    compare)."""
    seen: list[tuple[float, float]] = []
    volumes = []
    everything = [pt for r in rounds for pt in round_points(r)]
    reference = 1.1 * max((t for t, _ in everything), default=1.0)
    for r in rounds:
        seen += round_points(r)
        volumes.append(hypervolume(seen, reference))
    return {"front": pareto_front(seen), "hypervolume": volumes, "reference_tokens": reference}


def _plot_trajectory(rounds: list[dict], path: Path) -> Path:
    """Left: every candidate in the (tokens, accuracy) plane coloured by round, with the
    Pareto front; right: the front's hypervolume after each round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    summary = front_over_rounds(rounds)
    fig, (ax_plane, ax_hv) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs, ys, colours = [], [], []
    for i, r in enumerate(rounds, 1):
        for tokens, accuracy in round_points(r):
            xs.append(tokens)
            ys.append(accuracy)
            colours.append(i)
    dots = ax_plane.scatter(xs, ys, c=colours, s=16, cmap="viridis", alpha=0.8)
    if xs:
        fig.colorbar(dots, ax=ax_plane, label="round", ticks=MaxNLocator(integer=True))
    front = summary["front"]
    if front:
        ax_plane.step(*zip(*front, strict=True), where="post", color="C3", label="Pareto front")
        ax_plane.legend(frameon=False, loc="lower right")
    ax_plane.set_xscale("log")
    ax_plane.set_xlabel("mean tokens per question")
    ax_plane.set_ylabel("mean accuracy (%)")
    marker = "o" if len(rounds) <= 30 else None
    ax_hv.plot(range(1, len(rounds) + 1), summary["hypervolume"], color="C3", marker=marker, ms=3)
    ax_hv.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_hv.set_xlabel("round")
    ax_hv.set_ylabel("hypervolume (accuracy × log10 tokens)")
    for ax in (ax_plane, ax_hv):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _plot_curves(panels: list[tuple[str, dict]], name: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, data) in zip(axes.flat, panels, strict=True):
        for label, curve, marker in ((name, data["winner"], "o"), ("cmc", data["cmc"], "s")):
            curve = sorted(curve, key=lambda p: p["tokens"])
            if not curve:
                continue
            xs = [p["tokens"] for p in curve]
            (line,) = ax.plot(xs, [p["accuracy"] for p in curve], marker=marker, ms=4, label=label)
            if all(p.get("accuracy_interval") for p in curve):  # runs before intervals: none
                low, high = zip(*(p["accuracy_interval"] for p in curve), strict=True)
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, lw=0)
        sc = data["sc64"]
        low, high = sc.get("accuracy_interval") or (sc["accuracy"], sc["accuracy"])
        ax.errorbar(
            [sc["tokens"]],
            [sc["accuracy"]],
            yerr=[[sc["accuracy"] - low], [high - sc["accuracy"]]],
            fmt="*",
            ms=10,
            color="k",
            capsize=3,
            label="SC@64",
        )
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("mean tokens per question")
        ax.set_ylabel("mean accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def comparison_rows(data: dict, name: str) -> list[tuple[str, ...]]:
    """(controller, setting, accuracy % ± se, its 95 % interval, tokens, their interval,
    % of SC@64 tokens) rows of a judgement (runs recorded before intervals: "-")."""
    sc = data["sc64"]
    rows = []
    for label, curve in ((name, data["winner"]), ("cmc", data["cmc"]), ("sc", [sc])):
        for p in curve:
            se = p.get("accuracy_se")
            low, high = p.get("accuracy_interval") or (None, None)
            tok_low, tok_high = p.get("tokens_interval") or (None, None)
            rows.append(
                (
                    label,
                    p.get("setting") or "n=64",
                    f"{p['accuracy']:.2f}" + ("" if se is None else f" ± {se:.2f}"),
                    "-" if low is None else f"[{low:.1f}, {high:.1f}]",
                    f"{p['tokens'] / 1000:.1f}k",
                    "-" if tok_low is None else f"[{tok_low / 1000:.1f}k, {tok_high / 1000:.1f}k]",
                    f"{100 * p['tokens'] / sc['tokens']:.1f}",
                )
            )
    return rows


COMPARISON_COLUMNS = (
    "controller",
    "setting",
    "accuracy % ± se",
    "95% interval",
    "tokens",
    "tokens 95% interval",
    "% of SC@64 tokens",
)


def verdict_lines(verdict: dict | None, name: str) -> list[str]:
    """The acceptance comparison in words: "matches" and "beats" only where the paired
    interval supports them, otherwise "no significant difference" with the numbers (runs
    recorded before intervals existed show their point estimates as such)."""
    if not verdict:
        return []
    level = f"{verdict.get('confidence', 0.95):.0%}"
    margin_points = verdict.get("match_margin", 0.5)
    sc = f"SC@64 ({verdict['sc64_accuracy']:.2f}%)"
    lines = []
    shown = verdict.get("sc64_shown_match")
    if verdict.get("matches_sc64"):
        low = shown["difference"][1]
        lines.append(
            f"{name} {shown['setting']} matches {sc} at {100 * shown['token_share']:.1f}% of its "
            f"tokens: at most {margin_points:g} points worse with {level} confidence "
            f"(difference {shown['difference'][0]:+.2f}, interval from {low:+.2f})."
        )
    else:
        share = verdict.get("token_share_of_sc64")
        point = verdict.get("cheapest_matching_sc64")
        detail = (
            f"on the means, {point} comes within {margin_points:g} points at "
            f"{100 * share:.1f}% of its tokens"
            if point and share
            else "not even on the means"
        )
        if shown:
            detail += (
                f"; the cheapest setting shown to match is {shown['setting']} at "
                f"{100 * shown['token_share']:.1f}% of its tokens (over the 35 % target)"
            )
        lines.append(f"{name} is not shown to match {sc} within 35 % of its tokens ({detail}).")
    margin = verdict.get("margin_vs_cmc")
    if margin is not None:
        mean, low, high = margin
        kind = (
            "beats CMC"
            if verdict.get("beats_cmc")
            else "worse than CMC"
            if verdict.get("worse_than_cmc")
            else "no significant difference from CMC"
        )
        lines.append(
            f"Accuracy vs CMC at equal tokens: {kind} ({mean:+.2f} points on average, "
            f"{level} interval [{low:+.2f}, {high:+.2f}])."
        )
    elif verdict.get("mean_margin_vs_cmc") is not None:
        lines.append(
            f"Accuracy vs CMC at equal tokens: {verdict['mean_margin_vs_cmc']:+.2f} points on "
            "average (point estimate only: this run recorded no interval)."
        )
    lines += [_window_line(w, name, level) for w in verdict.get("windows", [])]
    return lines


def _window_line(window: dict, name: str, level: str) -> str:
    """One budget window in words (settings chosen on the means, paired interval)."""
    head = f"Within {100 * window['share']:.0f}% of SC@64's tokens: "
    if window.get("family") is None or window.get("cmc") is None:
        missing = name if window.get("family") is None else "CMC"
        return head + f"{missing} has no setting this cheap."
    mean, low, high = window["difference"]
    compared = (
        f"{name} {window['family_setting']} {window['family_accuracy']:.2f}% vs CMC "
        f"{window['cmc_setting']} {window['cmc_accuracy']:.2f}%"
    )
    if low is None:
        return head + f"{compared} ({mean:+.2f} points; no interval recorded)."
    kind = "beats CMC" if low > 0 else "worse than CMC" if high < 0 else "no significant difference"
    return (
        head
        + f"{compared}: {kind} ({mean:+.2f} points, {level} interval [{low:+.2f}, {high:+.2f}])."
    )


def render_report(run: RunDirectory) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and their figures into the run directory."""
    config = run.config
    rounds = run.rounds()
    records = run.records()
    out: dict[str, Path] = {}
    md = [f"# Discovery run `{run.path.name}`", ""]
    md.append(f"Strategy: **{config.get('strategy', '?')}**. Rounds recorded: {len(rounds)}.")
    search = config.get("search", {})
    if search:
        md.append(
            f"Search environments: {', '.join(search.get('search_envs', []))}; held-out: "
            f"{', '.join(search.get('heldout_envs', [])) or 'none'}."
        )
    llm = [r for r in records if r.get("event") == "llm_usage"]
    if llm:
        prompt = sum(r.get("prompt_tokens", 0) for r in llm)
        completion = sum(r.get("completion_tokens", 0) for r in llm)
        cost = sum(r.get("usd", 0.0) or 0.0 for r in llm)
        md.append(f"LLM usage: {prompt:,} prompt + {completion:,} completion tokens, ${cost:.4f}.")
    md.append("")
    if rounds:
        out["trajectory"] = _plot_trajectory(rounds, run.path / "trajectory.png")
        summary = front_over_rounds(rounds)
        md += ["## Trajectory", "", "![trajectory](trajectory.png)", ""]
        md.append(
            f"Pareto front after {len(rounds)} rounds: {len(summary['front'])} points, "
            f"hypervolume {summary['hypervolume'][-1]:.2f} (accuracy × log10 tokens, up to "
            f"{summary['reference_tokens'] / 1000:.1f}k tokens)."
        )
        md.append("")
        md += ["| round | candidate | status | accuracy % | tokens |", "|---|---|---|---|---|"]
        for i, r in enumerate(rounds, 1):
            acc = f"{r['accuracy']:.2f}" if r.get("accuracy") is not None else "-"
            tok = f"{r['tokens'] / 1000:.1f}k" if r.get("tokens") is not None else "-"
            md.append(
                f"| {i} | {r.get('candidate', '')} | {r.get('status', 'ok')} | {acc} | {tok} |"
            )
        md.append("")
    if (run.path / "race.json").exists():
        from .racing import race_lines

        lines = race_lines(run.read_json("race.json"))
        md += ["## Race (the selection's uncertainty)", "", *(f"- {line}" for line in lines)]
        md.append("")
    panels = []
    name = "discovered"
    for stage_file, title in (("search.json", "search"), ("heldout.json", "held-out")):
        if (run.path / stage_file).exists():
            data = run.read_json(stage_file)
            name = data.get("name", name)
            panels.append((f"{title}: " + ", ".join(data["envs"]), data))
    if panels:
        out["curves"] = _plot_curves(panels, name, run.path / "curves.png")
        md += ["## Scaling curves (means over environments)", "", "![curves](curves.png)", ""]
        for title, data in panels:
            md += [f"### {title}", ""]
            md.append("| " + " | ".join(COMPARISON_COLUMNS) + " |")
            md.append("|" + "---|" * len(COMPARISON_COLUMNS))
            md += ["| " + " | ".join(row) + " |" for row in comparison_rows(data, name)]
            md += ["", *verdict_lines(data.get("verdict"), name), ""]
    winner = run.path / "family" / "controller.py"
    best = run.stage_done("best")
    if not winner.exists() and best:
        winner = run.candidate_dir(int(best["candidate"])) / "controller.py"
    if winner.exists():
        md += ["## Winning controller", "", "```python", winner.read_text().rstrip(), "```", ""]
    text = "\n".join(md)
    out["markdown"] = atomic_write_text(run.path / "report.md", text)
    out["html"] = atomic_write_text(
        run.path / "report.html", markdown_to_html(text, f"autotts run {run.path.name}")
    )
    return out


_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
    "pre{background:#f6f8fa;padding:1em;overflow-x:auto}img{max-width:100%}"
)


def markdown_to_html(markdown: str, title: str) -> str:
    """A standalone HTML page of a Markdown report (CommonMark with tables, markdown-it-py)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
