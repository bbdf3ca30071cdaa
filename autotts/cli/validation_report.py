"""How ``autotts validate`` shows its report: live and replay accuracy, each with its interval
over questions and seeds, and live minus replay on the questions both played, with the
verdict its paired interval supports."""

from __future__ import annotations

from rich.table import Table

from .common import console


def print_validation(report: dict, title: str) -> None:
    """Print :func:`autotts.live.validation.validate_live`'s ``report`` as a table."""
    table = Table(title=title)
    for column in ("run", "accuracy %", "tokens/question", "episodes", "extra"):
        table.add_column(column)
    live = report["live"]
    table.add_row(
        "live",
        _with_interval(live),
        f"{live['tokens']:,.0f}",
        str(live["episodes"]),
        f"+{live['probe_tokens']:,.0f} probe tokens, {live['seconds_per_episode']:.2f} "
        f"s/episode, {live['tokens_per_s']:,.0f} tok/s, {live['errors']} errors",
    )
    if report.get("replay"):
        rep = report["replay"]
        table.add_row(
            f"replay {rep['env']}",
            _with_interval(rep),
            f"{rep['tokens']:,.0f}",
            str(rep["episodes"]),
            f"{rep['matched']} questions matched, 100 seeds"
            + (f", {rep['errors']} errors: {rep['first_error']}" if rep["errors"] else ""),
        )
    console.print(table)
    if report.get("comparison"):
        c = report["comparison"]
        console.print(
            f"on the {c['questions']} matched questions, live {c['live_accuracy']:.2f} − replay "
            f"{c['replay_accuracy']:.2f} = {c['difference']:+.2f} points, "
            f"{c['confidence']:.0%} interval [{c['low']:+.2f}, {c['high']:+.2f}] (questions "
            f"resampled together): {c['verdict']}"
        )


def _with_interval(row: dict) -> str:
    """An accuracy with its interval over questions and seeds."""
    return f"{row['accuracy']:.2f} [{row['interval']['low']:.1f}, {row['interval']['high']:.1f}]"
