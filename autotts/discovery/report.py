"""``autotts report RUN``: a discovery run as Markdown and HTML, with two figures.

- the round-by-round trajectory (accuracy and tokens of every candidate, best so far);
- the final scaling curves against SC@64 and CMC on the search and held-out environments;
- the winning controller's code.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from ..files import atomic_write_text
from ..rundir import RunDirectory


def _plot_trajectory(rounds: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_tok) = plt.subplots(1, 2, figsize=(10, 3.4))
    xs = list(range(1, len(rounds) + 1))
    acc = [math.nan if r.get("accuracy") is None else r["accuracy"] for r in rounds]
    tok = [math.nan if r.get("tokens") is None else r["tokens"] for r in rounds]
    best, best_so_far = -math.inf, []
    for a in acc:
        best = max(best, a if a == a else -math.inf)
        best_so_far.append(best if best > -math.inf else math.nan)
    ax_acc.scatter(xs, acc, s=8, alpha=0.6, label="candidate")
    ax_acc.plot(xs, best_so_far, color="C3", label="best so far")
    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("mean accuracy (%)")
    ax_acc.legend(frameon=False)
    ax_tok.scatter(xs, tok, s=8, alpha=0.6, color="C1")
    ax_tok.set_yscale("log")
    ax_tok.set_xlabel("round")
    ax_tok.set_ylabel("mean tokens per question")
    for ax in (ax_acc, ax_tok):
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
            pts = sorted((p["tokens"], p["accuracy"]) for p in curve)
            if not pts:
                continue
            ax.plot(*zip(*pts, strict=True), marker=marker, ms=4, label=label)
        sc = data["sc64"]
        ax.scatter([sc["tokens"]], [sc["accuracy"]], marker="*", s=90, color="k", label="SC@64")
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


def comparison_rows(data: dict, name: str) -> list[tuple[str, str, str, str, str]]:
    """(controller, setting, accuracy %, tokens, % of SC@64 tokens) rows of a judgement."""
    sc = data["sc64"]
    rows = []
    for label, curve in ((name, data["winner"]), ("cmc", data["cmc"])):
        for p in curve:
            rows.append(
                (
                    label,
                    p["setting"],
                    f"{p['accuracy']:.2f}",
                    f"{p['tokens'] / 1000:.1f}k",
                    f"{100 * p['tokens'] / sc['tokens']:.1f}",
                )
            )
    rows.append(("sc", "n=64", f"{sc['accuracy']:.2f}", f"{sc['tokens'] / 1000:.1f}k", "100.0"))
    return rows


COMPARISON_COLUMNS = ("controller", "setting", "accuracy %", "tokens", "% of SC@64 tokens")


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
    return lines


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
        md += ["## Trajectory", "", "![trajectory](trajectory.png)", ""]
        md += ["| round | candidate | status | accuracy % | tokens |", "|---|---|---|---|---|"]
        for i, r in enumerate(rounds, 1):
            acc = f"{r['accuracy']:.2f}" if r.get("accuracy") is not None else "-"
            tok = f"{r['tokens'] / 1000:.1f}k" if r.get("tokens") is not None else "-"
            md.append(
                f"| {i} | {r.get('candidate', '')} | {r.get('status', 'ok')} | {acc} | {tok} |"
            )
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
    out["html"] = atomic_write_text(run.path / "report.html", _to_html(text))
    return out


def _to_html(markdown: str) -> str:
    """A dependency-free HTML rendering of the report's Markdown subset."""
    body, in_code, in_table = [], False, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre><code>")
            in_code = not in_code
            continue
        if in_code:
            body.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1 : line.rindex(")")]
            body.append(f'<img src="{html.escape(src)}" style="max-width:100%">')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}td{padding:2px 8px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
