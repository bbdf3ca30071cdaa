"""Accuracy at matched budgets: the curve read at shares of SC@64's tokens, by hand on real
rows, flat beyond a curve's last setting and absent below its first; and the CLI preset."""

import json
import math

import pytest
from typer.testing import CliRunner

import autotts
from autotts.cli.main import app
from autotts.loading.run_configs import BASELINES_PRESET
from autotts.results.budgets import matched_budgets

ENVS = ["Qwen3-8B/aime24", "Qwen3-4B/aime24"]


@pytest.fixture(scope="module")
def report(env_dir):
    return autotts.evaluate(["sc@n=64", "cmc@beta=0,0.5,1", "ffs@n=1,4"], ENVS, seeds=4,
                            env_dir=env_dir)  # fmt: skip


def mean_point(report, controller, setting):
    rows = [r for r in report.rows if (r.controller, r.setting) == (controller, setting)]
    assert len(rows) == len(ENVS)
    return sum(r.tokens for r in rows) / len(rows), sum(r.accuracy for r in rows) / len(rows)


def test_budgets_read_the_mean_curve_by_hand(report):
    budget, sc_accuracy = mean_point(report, "sc", "n=64")
    cmc = sorted(mean_point(report, "cmc", f"β={b:g}") for b in (0, 0.5, 1))
    assert cmc[-1][0] < 0.9 * budget  # CMC never spends SC@64's tokens here
    (t0, a0), (t1, a1) = cmc[1], cmc[2]
    middle = math.sqrt(t0 * t1) / budget  # between its two dearer settings
    rows = matched_budgets(report, shares=(0.001, middle, 1.0, 2.0))
    rows = {r["controller"]: r for r in rows}
    at = {a["share"]: a for a in rows["cmc"]["at"]}
    assert at[0.001]["accuracy"] is None  # below its cheapest setting
    # log-linear on the envelope: half way in log tokens
    best0 = max(cmc[0][1], a0)
    assert at[middle]["accuracy"] == pytest.approx(best0 + 0.5 * (max(best0, a1) - best0))
    # beyond its last setting the curve is flat at its best
    assert at[1.0]["accuracy"] == at[2.0]["accuracy"] == max(a for _, a in cmc)
    assert rows["sc"]["at"][2]["accuracy"] == pytest.approx(sc_accuracy)
    for row in rows.values():
        for a in row["at"]:
            if a["accuracy"] is not None:
                assert a["low"] <= a["accuracy"] <= a["high"] and 0 < a["reach"] <= 1
        best = row["best"]
        assert best["low"] <= best["accuracy"] <= best["high"]
    assert rows["cmc"]["best"]["accuracy"] == max(a for _, a in cmc)


def test_budgets_need_the_baseline(env_dir):
    report = autotts.evaluate(["cmc@beta=0,1"], ENVS[:1], seeds=2, env_dir=env_dir)
    with pytest.raises(ValueError, match="sc@n=64 on every environment"):
        matched_budgets(report)


def test_compare_preset_baselines(tmp_path, env_dir):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["compare", "--preset", "baselines", "-e", "Qwen3-8B/aime25", "--seeds", "2",
         "--out", str(out), "--env-dir", str(env_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "budgets.json").read_text())
    names = [r["controller"] for r in rows]
    # sc@n=64 joins sc's curve; the two DeepConf variants need confidence this store lacks
    assert len(names) == len(BASELINES_PRESET) - 3 and "deepconf" not in names
    assert "deepconf left out" in " ".join(result.output.split())
    assert {"ffs", "short-m-at-k", "dynasor-cot", "sc-length-weighted", "cmc"} <= set(names)
    assert "25 % of sc@n=64's tokens" in result.output and (out / "curves.png").exists()
    bad = CliRunner().invoke(app, ["compare", "--preset", "nonsense"])
    assert bad.exit_code != 0 and "known: paper, baselines" in bad.output
