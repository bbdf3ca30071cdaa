import json

import pytest
from conftest import tiny_store

from autotts.envs.stores import (
    StoreError,
    find_environment,
    list_environments,
    load_records,
    resolve_env_dir,
)


def test_shipped_stores_load_and_are_listed(env_dir):
    ids = [info.env_id for info in list_environments(env_dir)]
    assert ids == [
        f"Qwen3-{m}/{d}" for m in ("0.6B", "1.7B", "4B", "8B") for d in ("aime24", "aime25")
    ]
    records = load_records(env_dir / "Qwen3-8B" / "aime24.json")
    assert len(records) == 30
    assert all(len(r.each_branch) == 128 and r.probe_freq == 500 for r in records)


def test_truncated_file_names_the_file_and_says_truncated(tmp_path, env_dir):
    text = (env_dir / "Qwen3-8B" / "aime24.json").read_text()
    bad = tmp_path / "M" / "d.json"
    bad.parent.mkdir()
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(StoreError, match=r"d\.json: not valid JSON .*truncated"):
        load_records(bad)


def test_wrong_field_type_names_question_and_field(tmp_path):
    path = tiny_store(tmp_path / "M" / "d.json", [[["7"], 600, "7"], [["7"], "many", "7"]])
    with pytest.raises(StoreError, match=r"question 0, field each_branch\[1\]\.branch_tokens"):
        load_records(path)


def test_missing_field_names_it(tmp_path):
    path = tmp_path / "M" / "d.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps([{"question": "q", "probe_freq": 500, "each_branch": [[[], 1, "1"]]}])
    )
    with pytest.raises(StoreError, match=r"question 0, field gold_answer: Field required"):
        load_records(path)


def test_missing_file_and_empty_store(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        load_records(tmp_path / "nope.json")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(StoreError, match="no questions"):
        load_records(empty)


def test_unknown_environment_lists_the_known_ones(env_dir):
    with pytest.raises(StoreError, match=r"unknown environment 'Qwen3-9B/aime24'.*Qwen3-8B/aime24"):
        find_environment("Qwen3-9B/aime24", env_dir)
    with pytest.raises(StoreError, match="MODEL/DATASET"):
        find_environment("aime24", env_dir)


def test_env_dir_from_environment_variable(tmp_path, monkeypatch):
    tiny_store(tmp_path / "Tiny" / "toy.json", [[["7"], 600, "7"]])
    monkeypatch.setenv("AUTOTTS_ENV_DIR", str(tmp_path))
    assert resolve_env_dir() == tmp_path
    assert [i.env_id for i in list_environments()] == ["Tiny/toy"]


def test_written_files_respect_the_umask(tmp_path):
    import os

    from autotts.utils.atomic_files import atomic_write_text

    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "results.csv", "a,b\n")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644
