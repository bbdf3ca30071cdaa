"""Equivalence-aware answers: which strings merge, which representative they take, what it
changes for a vote, the per-store cache, and the CLI's --canonicalize and report."""

import json

from conftest import tiny_store
from typer.testing import CliRunner

import autotts
from autotts.cli.main import app
from autotts.envs.answer_groups import (
    cached_groups,
    canonical_records,
    merge_report,
    question_groups,
)
from autotts.envs.stores import load_records

HALF = ["0.5", "\\frac{1}{2}", "1/2"]


def test_equivalent_answers_merge_into_the_most_frequent_final():
    mapping = question_groups(
        ["070", "70", "70", *HALF, "ERR", "ERR", "x", "\\boxed{5}", "5", "7"],
        ["0.50", "2/4", "70^\\circ", "071", "1/3"],
    )
    assert mapping == {
        "070": "70",  # the most frequent final of its group, not the first seen
        "70^\\circ": "70",
        "\\frac{1}{2}": "0.5",  # a tie: the first seen
        "1/2": "0.5",
        "0.50": "0.5",
        "2/4": "0.5",
        "5": "\\boxed{5}",  # a tie: the first seen
    }


def split_vote(tmp_path):
    """Three finals that are one half in three spellings, two finals of 3; gold 1/2."""
    branches = [[[], 500, a] for a in HALF] + [[[], 500, "3"]] * 2
    return tiny_store(tmp_path / "Toy" / "half.json", branches, gold="\\frac{1}{2}")


def test_grouping_rejoins_a_split_vote(tmp_path):
    records = load_records(split_vote(tmp_path))
    (groups,) = [question_groups([b[2] for b in records[0].each_branch], ["\\frac{1}{2}"])]
    merged = canonical_records(records, [groups])
    assert [b[2] for b in merged[0].each_branch] == ["0.5"] * 3 + ["3"] * 2
    assert merged[0].gold_answer == "0.5"
    (row,) = merge_report(records, [groups])
    assert row == {"question": 0, "representative": "0.5", "merged": ["1/2", "\\frac{1}{2}"],
                   "finals_changed": 2, "gold_group": True}  # fmt: skip


def test_evaluation_with_and_without_canonicalize(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTTS_CACHE_DIR", str(tmp_path / "cache"))
    split_vote(tmp_path)
    exact = autotts.evaluate("sc@n=5", "Toy/half", seeds=3, env_dir=tmp_path)
    grouped = autotts.evaluate("sc@n=5", "Toy/half", seeds=3, env_dir=tmp_path, canonicalize=True)
    assert exact.rows[0].accuracy == 0.0  # "3" wins the split vote 2 to 1
    assert grouped.rows[0].accuracy == 100.0  # one half, 3 votes to 2
    assert len(list((tmp_path / "cache" / "canonical").glob("*.json"))) == 1


def test_the_cache_is_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTTS_CACHE_DIR", str(tmp_path / "cache"))
    path = split_vote(tmp_path)
    records = load_records(path)
    first = cached_groups(path, records)
    (entry,) = (tmp_path / "cache" / "canonical").glob("*.json")
    entry.write_text(json.dumps([{"3": "three"}]))  # a cache entry is trusted as written
    assert cached_groups(path, records) == [{"3": "three"}] != first
    entry.write_text("{not json")  # a damaged one is recomputed
    assert cached_groups(path, records) == first


def test_cli_flag_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTTS_CACHE_DIR", str(tmp_path / "cache"))
    split_vote(tmp_path)
    runner = CliRunner()
    args = ["evaluate", "sc", "--grid", "n=5", "-e", "Toy/half", "--seeds", "2",
            "--env-dir", str(tmp_path), "--json"]  # fmt: skip
    for flag, accuracy in (([], 0.0), (["--canonicalize"], 100.0)):
        out = tmp_path / f"out{len(flag)}"
        result = runner.invoke(app, [*args, *flag, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)[0]["accuracy"] == accuracy
        assert json.loads((out / "run.json").read_text())["canonicalize"] == bool(flag)
    report = tmp_path / "merged.json"
    result = runner.invoke(app, ["envs", "canonicalize", "-e", "Toy/half",
                                 "--env-dir", str(tmp_path), "--out", str(report)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Toy/half" in result.output
    assert json.loads(report.read_text())["Toy/half"][0]["merged"] == ["1/2", "\\frac{1}{2}"]
