"""benchmarks/discovery_spread.py on a small setting: one row per seed, the spread per window
computed from the runs' held-out judgements."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "discovery_spread.py"


def test_spread_over_seeds(tmp_path, env_dir):
    out = tmp_path / "spread"
    args = ["--seeds", "0,1", "--trials", "7", "--search-seeds", "2", "--final-seeds", "2"]
    args += ["--window-trials", "3", "--race-seeds", "3"]
    args += ["--search-env", "Qwen3-8B/aime24", "--heldout-env", "Qwen3-8B/aime25"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out), "--env-dir", str(env_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "spread.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    for index, label in enumerate(("30%", "55%")):
        accuracies = [r["windows"][index]["family_accuracy"] for r in result["runs"]]
        window = result["windows"][label]
        assert window["spread"] == pytest.approx(max(accuracies) - min(accuracies))
        assert f"within {label}: spread {window['spread']:.2f} points" in done.stdout
    heldout = json.loads((out / "seed-1" / "heldout.json").read_text())
    assert result["runs"][1]["margin_vs_cmc"] == heldout["verdict"]["margin_vs_cmc"]
