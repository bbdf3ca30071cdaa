"""The discovery report: comparison tables with intervals, the Pareto front and its
hypervolume over rounds, HTML rendered by a real Markdown library."""

import math

import pytest

from autotts.discovery.optuna_search import SearchSettings
from autotts.discovery.run_report import comparison_rows, front_over_rounds, render_report
from autotts.discovery.stages import curves_with_baselines, write_judgement
from autotts.results.run_directory import RunDirectory


def rounds(*points):
    return [{"event": "round", "accuracy": a, "tokens": t} for t, a in points]


def test_front_and_hypervolume_over_rounds_by_hand():
    history = rounds((100, 50), (200, 40), (400, 70), (50, 30))
    history.insert(2, {"event": "round", "status": "rejected", "accuracy": None, "tokens": None})
    summary = front_over_rounds(history)
    assert summary["front"] == [(50, 30), (100, 50), (400, 70)]
    ref = 440.0
    assert summary["reference_tokens"] == pytest.approx(ref)
    first = 50 * math.log10(ref / 100)
    third = first + 20 * math.log10(ref / 400)  # (400, 70) adds a strip above accuracy 50
    last = third + 30 * math.log10(100 / 50)  # (50, 30) adds the cheap corner
    expected = [first, first, first, third, last]  # (200, 40) and the rejected round add nothing
    assert summary["hypervolume"] == pytest.approx(expected)


def test_an_llm_round_contributes_its_whole_curve():
    llm = {"event": "round", "status": "ok", "accuracy": 60, "tokens": 300,
           "curve": [[0.0, 40, 100], [1.0, 60, 300]]}  # fmt: skip
    assert front_over_rounds([llm])["front"] == [(100, 40), (300, 60)]


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory, env_dir):
    """A run directory with four recorded rounds and a search-set judgement of ASC as the
    "discovered" family (3 seeds: fast, and a real evaluation with real intervals)."""
    run = RunDirectory.create(
        tmp_path_factory.mktemp("report") / "run",
        {"strategy": "optuna", "search": {"search_envs": ["Qwen3-8B/aime24"], "heldout_envs": []}},
    )
    for record in rounds((150e3, 80), (300e3, 83), (90e3, 70), (200e3, 84)):
        run.append(record)
    settings = SearchSettings(
        search_envs=["Qwen3-8B/aime24"], final_seeds=3, workers=1, env_dir=str(env_dir)
    )
    data = curves_with_baselines("asc", "discovered", ["Qwen3-8B/aime24"], settings)
    write_judgement(run, "search.json", {"name": "discovered", **data})
    return run


def test_comparison_rows_carry_standard_errors_and_intervals(judged_run):
    data = judged_run.read_json("search.json")
    rows = comparison_rows(data, "discovered")
    assert {r[0] for r in rows} == {"discovered", "cmc", "sc"} and len(rows) == 23
    for point in [*data["winner"], *data["cmc"], data["sc64"]]:
        low, high = point["accuracy_interval"]
        assert low <= point["accuracy"] <= high and point["accuracy_se"] > 0
        tok_low, tok_high = point["tokens_interval"]
        assert tok_low <= point["tokens"] <= tok_high
    sc = rows[-1]
    assert sc[:2] == ("sc", "n=64") and " ± " in sc[2] and sc[3].startswith("[")
    old = {key: {k: v for k, v in p.items() if "interval" not in k and k != "accuracy_se"}
           for key, p in (("sc64", data["sc64"]),)}  # fmt: skip
    recorded_before = dict(data, winner=[], cmc=[], **old)
    assert comparison_rows(recorded_before, "x") == [
        ("sc", "n=64", f"{data['sc64']['accuracy']:.2f}", "-",
         f"{data['sc64']['tokens'] / 1000:.1f}k", "-", "100.0")
    ]  # fmt: skip


def test_report_markdown_and_html(judged_run):
    paths = render_report(judged_run)
    markdown = paths["markdown"].read_text()
    assert "Pareto front after 4 rounds: 3 points, hypervolume" in markdown
    assert "| accuracy % ± se | 95% interval |" in markdown
    page = paths["html"].read_text()
    assert "<strong>optuna</strong>" in page and "**" not in page  # real Markdown, not literal
    assert page.count("<table>") == 2 and "<th>accuracy % ± se</th>" in page
    assert '<img src="trajectory.png" alt="trajectory"' in page
    assert paths["trajectory"].stat().st_size > 10_000
