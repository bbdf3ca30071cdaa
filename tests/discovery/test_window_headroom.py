"""benchmarks/window_headroom.py on one held-out store at 3 seeds: CMC's window choice is its
most accurate setting inside each window, and every row's difference is paired against it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "window_headroom.py"


def test_headroom_rows_are_paired_against_cmcs_window_choice(tmp_path, env_dir):
    out = tmp_path / "headroom.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seeds", "3", "--env", "Qwen3-8B/aime25",
         "--env-dir", str(env_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    cmc_curve = autotts_curve(env_dir)
    for window in result["windows"]:
        cap = window["share"] * result["sc64_tokens"]
        inside = [p for p in cmc_curve if p[1] <= cap]
        assert window["cmc"]["accuracy"] == pytest.approx(max(p[0] for p in inside))
        assert f"within {100 * window['share']:.0f} % of SC@64's tokens" in done.stdout
        rules = {row["rule"] for row in window["rows"]}
        assert {"sc", "sc-length-weighted", "optuna-family"} <= rules
        for row in window["rows"]:
            mean, low, high = row["difference"]
            assert mean == pytest.approx(row["accuracy"] - window["cmc"]["accuracy"])
            assert low <= mean <= high
            assert ("over the window" in row["verdict"]) == (row["tokens"] > cap)


def autotts_curve(env_dir):
    import autotts

    report = autotts.evaluate("cmc", "Qwen3-8B/aime25", seeds=3, env_dir=env_dir)
    return [(r.accuracy, r.tokens) for r in report.rows if "/" in r.env_id]
