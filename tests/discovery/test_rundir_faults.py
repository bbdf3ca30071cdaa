"""A run directory under concurrency and damage: nothing recorded is lost or counted twice."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SMALL_DISCOVERY

from autotts.discovery.optuna_search import SearchSettings, structural_search
from autotts.results.run_directory import RunDirectory, RunError


def discover(*args, env_dir):
    command = [sys.executable, "-m", "autotts.cli", "discover", *args, "--env-dir", str(env_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_a_second_process_cannot_resume_a_run_in_use(tmp_path, env_dir):
    run = RunDirectory.create(tmp_path / "run", {"strategy": "optuna"})
    history = (run.path / "history.jsonl").read_text()
    with run.lock():
        second = RunDirectory(run.path)
        with pytest.raises(RunError, match="in use by another autotts process"), second.lock():
            pass
        done = discover("--resume", str(run.path), env_dir=env_dir)
        assert done.returncode == 2 and "in use by another autotts process" in done.stderr
    assert (run.path / "history.jsonl").read_text() == history
    with run.lock():  # released: the next process gets it
        pass


def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path):
    run = RunDirectory.create(tmp_path / "run", {"strategy": "optuna"})
    run.append({"event": "round", "trial": 0})
    with open(run.path / "history.jsonl", "a") as handle:
        handle.write('{"event": "round", "tri')  # a kill in the middle of a write
    run.append({"event": "round", "trial": 1})
    lines = (run.path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["created", "round", "round"]
    assert [r["trial"] for r in run.rounds()] == [0, 1]


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_lost_history_is_refused_on_resume(damage, tmp_path, env_dir):
    run = RunDirectory.create(tmp_path / "run", {"strategy": "optuna"})
    history = run.path / "history.jsonl"
    if damage == "deleted":
        history.unlink()
    else:
        history.write_text("")
    with pytest.raises(RunError, match="history.jsonl is missing or empty"):
        RunDirectory.open(run.path)
    done = discover("--resume", str(run.path), env_dir=env_dir)
    assert done.returncode == 2 and "missing or empty" in done.stderr
    assert not (run.path / "optuna.db").exists()  # nothing was started


@pytest.fixture
def searched(tmp_path, env_dir):
    """A run directory with three finished structural-search trials."""
    settings = SearchSettings(
        search_envs=["Qwen3-8B/aime24"], seeds=1, trials=3, workers=1, env_dir=str(env_dir)
    )
    run = RunDirectory.create(tmp_path / "run", {"strategy": "optuna"})
    structural_search(run, settings)
    assert len(run.rounds()) == 3
    return run, settings


def test_trials_link_to_their_candidates_for_optuna_dashboard(searched):
    import optuna

    run, _ = searched
    study = optuna.load_study(
        study_name="structural", storage=f"sqlite:///{run.path / 'optuna.db'}"
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for trial, record in zip(complete, run.rounds(), strict=True):
        attrs = trial.user_attrs
        assert Path(attrs["candidate_dir"]) == run.candidate_dir(trial.number).resolve()
        assert (Path(attrs["candidate_dir"]) / "result.json").exists()
        assert attrs["stage"] == "search" and attrs["accuracy"] == record["accuracy"]


def test_a_deleted_study_is_refused_and_the_history_kept(searched):
    run, settings = searched
    before = (run.path / "history.jsonl").read_text()
    (run.path / "optuna.db").unlink()
    settings.trials = 5
    with pytest.raises(RunError, match="lacks 3 trial"):
        structural_search(run, settings)
    assert (run.path / "history.jsonl").read_text() == before


def test_a_replaced_history_is_refused_and_the_study_kept(searched):
    run, settings = searched
    history = run.path / "history.jsonl"
    history.write_text(history.read_text().splitlines()[0] + "\n")  # only "created" is left
    settings.trials = 5
    with pytest.raises(RunError, match="finished trial"):
        structural_search(run, settings)
    import optuna

    study = optuna.load_study(
        study_name="structural", storage=f"sqlite:///{run.path / 'optuna.db'}"
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3  # nothing was run twice


def test_bad_options_are_refused_before_the_run_directory_exists(tmp_path, env_dir):
    storage = ["--storage", "mysql://autotts@127.0.0.1/autotts"]  # no MySQL driver installed
    for option in (["--sampler", "foo"], ["--strategy", "nope"], ["--trials", "0"], storage):
        done = discover("-o", str(tmp_path / "run"), *SMALL_DISCOVERY, *option, env_dir=env_dir)
        assert done.returncode == 2, done.stderr[-1000:]
        assert option[0] in done.stderr or "Invalid value" in done.stderr
        assert not (tmp_path / "run").exists()
    assert "database driver is missing" in done.stderr


def test_a_full_disk_names_the_path(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = textwrap.dedent(
        f"""
        from autotts.results.run_directory import RunDirectory, RunError
        run = RunDirectory.create({str(disk / "run")!r}, {{"strategy": "optuna"}})
        kept = 0
        try:
            for trial in range(100000):
                run.append({{"event": "round", "trial": trial, "pad": "x" * 200}})
                kept += 1
        except RunError as exc:
            print("REFUSED", kept, exc)
        print("READ", len(run.rounds()))
        """
    )
    mount = f'mount -t tmpfs -o size=64k tmpfs {disk} && {sys.executable} -c "$0"'
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()[:200]}")
    assert "REFUSED" in done.stdout, done.stdout + done.stderr
    refused = next(line for line in done.stdout.splitlines() if line.startswith("REFUSED"))
    _, kept, message = refused.split(" ", 2)
    assert "history.jsonl: no space left on the device" in message
    read = next(line for line in done.stdout.splitlines() if line.startswith("READ"))
    assert int(read.split()[1]) == int(kept)  # every acknowledged record is still readable


def test_a_failing_llm_endpoint_stops_the_run(tmp_path, env_dir):
    from autotts.sandbox import isolation_problems

    if isolation_problems():
        pytest.skip("the LLM path needs OS isolation")
    run = tmp_path / "run"
    done = discover(
        "-o", str(run), "--trials", "6", "--llm-model", "nobody",
        "--llm-base-url", "http://127.0.0.1:9/v1", *SMALL_DISCOVERY, env_dir=env_dir,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "failed 3 rounds in a row" in done.stderr
    assert len(RunDirectory.open(run).rounds()) == 3


def test_a_search_is_deterministic_given_its_seed(tmp_path, env_dir):
    def search(name: str, seed: int) -> list[tuple]:
        settings = SearchSettings(
            search_envs=["Qwen3-8B/aime24"], seeds=1, trials=7, workers=1,
            env_dir=str(env_dir), sampler_seed=seed,
        )  # fmt: skip
        assert settings.time_budget_s is None  # the trial count alone limits a search
        run = RunDirectory.create(tmp_path / name, {"strategy": "optuna"})
        structural_search(run, settings)
        return [(r["params"], r["values"]) for r in run.rounds()]

    first = search("a", seed=3)
    assert len(first) == 7 and search("b", seed=3) == first
    other = search("c", seed=4)
    assert other[:5] == first[:5]  # the CMC warm starts
    assert other[5:] != first[5:]  # then the sampler's seed decides
