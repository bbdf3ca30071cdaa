"""Run-to-run spread of discovery: `autotts discover` with several sampler seeds, judged on the
held-out environments, and how far apart the runs land in each budget window (the family's
best setting within 30 % and 55 % of SC@64's tokens) next to each run's paired verdict
against CMC there. Issue 14's target: a spread of at most 0.5 points in both windows, every
run beating CMC in both.

    python benchmarks/discovery_spread.py [--seeds 0,1,2,3,4] [--out runs/spread] [discover options]

Finished runs in ``--out/seed-N`` are reused (a killed benchmark resumes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import autotts
from autotts.discovery.runs import AIME24, AIME25


def window_cell(window: dict) -> str:
    if window.get("family") is None:
        return "-"
    mean, low, high = window["difference"]
    return f"{window['family_accuracy']:.2f} ({mean:+.2f} [{low:+.2f}, {high:+.2f}])"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="Sampler seeds, comma-separated.")
    parser.add_argument("--out", type=Path, default=Path("autotts-runs/spread"))
    parser.add_argument("--search-env", action="append", help="Repeatable (default: AIME24 ×4).")
    parser.add_argument("--heldout-env", action="append", help="Repeatable (default: AIME25 ×4).")
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--search-seeds", type=int, default=20)
    parser.add_argument("--final-seeds", type=int, default=100)
    parser.add_argument(
        "--target", default="0.30,0.55", help="Budget windows ('none': no windows)."
    )
    parser.add_argument("--window-trials", type=int, default=150)
    parser.add_argument("--race-seeds", type=int, default=100)
    parser.add_argument("--env-dir", default=None)
    args = parser.parse_args()
    windows = "" if args.target.strip().lower() == "none" else args.target
    targets = [float(t) for t in windows.split(",") if t.strip()]

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = autotts.discover(
            args.search_env or AIME24,
            args.heldout_env or AIME25,
            run_dir=args.out / f"seed-{seed}",
            seed=seed,
            trials=args.trials,
            seeds=args.search_seeds,
            final_seeds=args.final_seeds,
            targets=targets,
            window_trials=args.window_trials,
            race_seeds=args.race_seeds,
            env_dir=args.env_dir,
        )
        verdict = run.judgement()["verdict"]
        rows.append({"seed": seed, **verdict})

    print("seed | vs CMC at equal tokens | ≤ 30 % of SC@64: accuracy (Δ vs CMC [95 %]) | ≤ 55 %")
    for row in rows:
        mean, low, high = row["margin_vs_cmc"]
        cells = [window_cell(w) for w in row["windows"]]
        print(f"{row['seed']} | {mean:+.2f} [{low:+.2f}, {high:+.2f}] | {cells[0]} | {cells[1]}")
    summary = {}
    for index, window in enumerate(rows[0]["windows"]):
        accuracies = [r["windows"][index].get("family_accuracy") for r in rows]
        accuracies = [a for a in accuracies if a is not None]
        label = f"{100 * window['share']:.0f}%"
        spread = max(accuracies) - min(accuracies) if accuracies else None
        beaten = sum(1 for r in rows if r["windows"][index]["beats_cmc"])
        summary[label] = {"spread": spread, "runs_beating_cmc": beaten, "runs": len(rows)}
        shown = "-" if spread is None else f"{spread:.2f}"
        print(f"within {label}: spread {shown} points; {beaten}/{len(rows)} runs beat CMC")
    (args.out / "spread.json").write_text(json.dumps({"runs": rows, "windows": summary}, indent=2))


if __name__ == "__main__":
    main()
