"""Quick tests: the model's choice of β points, environments and seeds within the stated
budget (what is cut is said), and replies with paired differences against CMC and SC@64."""

from pathlib import Path

from autotts.discovery.candidates import evaluate_candidate
from autotts.discovery.quicktest import (
    MAX_EPISODES,
    Baselines,
    budget_text,
    parse_request,
    report_text,
)
from autotts.envs.replay import ReplayEnvironment

SEARCH = ["A/aime24", "B/aime24", "C/aime24"]
CMC = Path(__file__).parents[2] / "controllers" / "baselines" / "cmc.py"


def test_a_test_line_chooses_betas_environments_and_seeds():
    asked = parse_request(
        "idea\nACTION: test\nTEST: betas=1,0,0.25 envs=C/aime24 seeds=7", SEARCH, 30
    )
    assert (asked.betas, asked.envs, asked.seeds, asked.notes) == (
        [0, 0.25, 1],
        ["C/aime24"],
        7,
        [],
    )
    default = parse_request("ACTION: test", SEARCH, 30)
    assert (
        default.envs == SEARCH[:2] and default.betas == [0.0, 0.3, 0.6, 1.0] and not default.notes
    )


def test_what_is_over_the_budget_is_cut_and_said():
    asked = parse_request("TEST: betas=0,0.1,0.2,0.3,0.4,0.5 seeds=50", SEARCH, 100)
    assert len(asked.betas) == 5 and any("first 5" in n for n in asked.notes)
    assert asked.seeds == 6 and 6 * len(asked.betas) * len(asked.envs) * 100 <= MAX_EPISODES
    assert any("seeds=50: cut to 10" in n for n in asked.notes)
    assert any("over the 6,000 budget" in n for n in asked.notes)
    wrong = parse_request("TEST: envs=Z/aime24 betas=2 seeds=x", SEARCH, 30)
    assert wrong.envs == SEARCH[:2] and wrong.betas == [0.0, 0.3, 0.6, 1.0]
    assert len(wrong.notes) == 3 and "unknown environments ['Z/aime24']" in wrong.notes[1]
    assert "at most 5 β values" in budget_text(SEARCH, 30, 2)


def test_a_quick_test_reports_paired_differences(env_dir):
    env_id = "Qwen3-8B/aime24"
    asked = parse_request("TEST: betas=0,1 seeds=2", [env_id], 30)
    envs = {env_id: ReplayEnvironment.load(env_id, env_dir)}
    result = evaluate_candidate(CMC.read_text(), envs, asked.betas, asked.seeds, workers=1)
    reference, sc = Baselines(env_dir).for_test([env_id], asked.seeds)
    text = report_text(asked, result, reference, sc)
    lines = text.splitlines()
    assert lines[0] == f"2 seeds per question on {env_id}" and lines[1].startswith("SC@64 here:")
    assert [line.split(":")[0] for line in lines[2:4]] == ["β=0", "β=1"]
    assert all("vs CMC at equal tokens" in line and "vs SC@64" in line for line in lines[2:4])
    # the CMC file as a draft plays CMC's very episodes: the pairing is exact
    by_beta = {p["beta"]: p["accuracy"] for p in reference.curve}
    assert [p["accuracy"] for p in result.curve] == [by_beta[0.0], by_beta[1.0]]
    assert lines[-1].startswith("objective on this test:")
