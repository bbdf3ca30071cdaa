"""How much room a budget window leaves above CMC: CMC's most accurate setting within 30 % and
55 % of SC@64's tokens (held out: the 4 AIME25 stores, 100 seeds), next to answer rules that
read every branch they want with no budget at all — SC@N and length-weighted SC@N for N up to
the store's 128 branches. Each row's difference to CMC's window choice is paired over the same
(question, seed) episodes, with its 95 % interval (:mod:`autotts.results.stats`).

A rule that spends two to four times the window's tokens and still cannot beat CMC's window
choice significantly bounds what any controller choosing its answer by (weighted) vote can
show there with these questions.

    python benchmarks/window_headroom.py [--seeds 100] [--env-dir ../shared/environments] [--out headroom.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import autotts
from autotts.discovery.runs import AIME25
from autotts.discovery.verdict import WINDOWS, outcome_tables
from autotts.results.stats import interval_of, joint_replicates, superiority

RULES = (
    "sc@n=32",
    "sc@n=64",
    "sc@n=128",
    "sc_length_weighted@n=32,64,128@gamma=1,2",
    "controllers/discovered/optuna_family.py",
)


def curve(report, name: str):
    """``[(setting, accuracy, tokens, accuracy tables)]`` of one controller (means over
    environments; one ``(questions, seeds)`` table per environment)."""
    rows = {}
    for row in report.rows:
        if row.controller == name and "/" in row.env_id:  # per environment, not the mean
            rows.setdefault(row.setting, []).append(row)
    points = []
    for setting, env_rows in rows.items():
        accuracy, tokens = outcome_tables(report, env_rows)
        mean_acc = float(np.mean([a.mean() for a in accuracy]))
        mean_tok = float(np.mean([t.mean() for t in tokens]))
        points.append((setting, mean_acc, mean_tok, accuracy))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--env", action="append", help="Repeatable (default: AIME25 ×4).")
    parser.add_argument("--env-dir", default=None)
    parser.add_argument("--out", type=Path, help="Also write the tables as JSON here.")
    args = parser.parse_args()
    envs = args.env or AIME25
    report = autotts.evaluate(["cmc", *RULES], envs, seeds=args.seeds, env_dir=args.env_dir)
    names = list(dict.fromkeys(row.controller for row in report.rows))
    curves = {name: curve(report, name) for name in names}
    sc64 = next(p for p in curves["sc"] if p[0] == "n=64")
    groups = {(name, i): p[3] for name, points in curves.items() for i, p in enumerate(points)}
    reps = joint_replicates(groups)

    windows = []
    for share in WINDOWS:
        cap = share * sc64[2]
        inside = [(i, p) for i, p in enumerate(curves["cmc"]) if p[2] <= cap]
        j, cmc = max(inside, key=lambda item: item[1][1])
        window = {"share": share, "cmc": {"setting": cmc[0], "accuracy": cmc[1],
                                           "tokens": cmc[2]}, "rows": []}  # fmt: skip
        print(
            f"\nwithin {100 * share:.0f} % of SC@64's tokens: CMC {cmc[0]} "
            f"{cmc[1]:.2f} % at {cmc[2] / sc64[2]:.0%} of SC@64's tokens"
        )
        print("rule | setting | accuracy % | tokens (× SC@64) | Δ vs CMC [95 %] | verdict")
        for name in names[1:]:
            for i, (setting, accuracy, tokens, _) in enumerate(curves[name]):
                diff = interval_of(accuracy - cmc[1], reps[(name, i)] - reps[("cmc", j)])
                verdict = superiority(diff).kind
                if tokens > cap:
                    verdict += " (over the window)"
                window["rows"].append({"rule": name, "setting": setting, "accuracy": accuracy,
                                       "tokens": tokens, "difference": [diff.mean, diff.low,
                                       diff.high], "verdict": verdict})  # fmt: skip
                print(
                    f"{name} | {setting} | {accuracy:.2f} | {tokens / sc64[2]:.2f} | "
                    f"{diff.mean:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}] | {verdict}"
                )
        windows.append(window)
    if args.out:
        args.out.write_text(json.dumps({"sc64_tokens": sc64[2], "windows": windows}, indent=2))


if __name__ == "__main__":
    main()
