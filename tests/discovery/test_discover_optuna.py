"""The Optuna discovery path end to end: run, kill -9, resume, export, check, report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL_DISCOVERY

from autotts.discovery.export import export_controller
from autotts.discovery.run_report import render_report
from autotts.evaluation.checker import check_controller
from autotts.results.run_directory import RunDirectory

SMALL = [*SMALL_DISCOVERY, "--workers", "1"]


def discover(*args, env_dir):
    return [sys.executable, "-m", "autotts.cli", "discover", *args, "--env-dir", str(env_dir)]


def finished_discovery(run: Path, env_dir, *args) -> tuple:
    """``autotts discover -o RUN ARGS`` run to its end: (the process, the run directory)."""
    done = subprocess.run(
        discover("-o", str(run), *args, env_dir=env_dir), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done, RunDirectory(run)


def history_lines(run: Path) -> list[str]:
    return (run / "history.jsonl").read_text().splitlines()


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_repeating_a_round(tmp_path, env_dir):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        discover("-o", str(run), "--trials", "24", *SMALL, env_dir=env_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "history.jsonl").exists() and len(RunDirectory(run).rounds()) >= 6:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 mid-round, workers included
    proc.wait()
    before = history_lines(run)
    rounds_before = RunDirectory(run).rounds()
    assert 6 <= len(rounds_before) < 24 + 2 * 3  # the structural trials, then 3 per window

    done = subprocess.run(
        discover("--resume", str(run), env_dir=env_dir), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    after = history_lines(run)
    # nothing written before the kill is lost (a cut-off last line may be left behind)
    complete_before = [line for line in before if line.endswith("}")]
    assert after[: len(complete_before)] == complete_before
    rounds = RunDirectory(run).rounds()
    candidates = [r["candidate"] for r in rounds]
    assert len(rounds) == 24 + 2 * 3 and len(set(candidates)) == len(rounds)
    assert rounds[: len(rounds_before)] == rounds_before
    # Optuna agrees: exactly 24 completed structural trials and 3 per window study
    import optuna

    for name, count in (("structural", 24), ("structural-window-0.3", 3),
                        ("structural-window-0.55", 3)):  # fmt: skip
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{run / 'optuna.db'}")
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) == count
    assert "held-out" in done.stdout and "SC@64" in done.stdout

    # export → a normal controller that passes the checker
    out = export_controller(run, tmp_path / "found_it.py")
    text = out.read_text()
    assert text.startswith("# Discovered by autotts") and "Qwen3-8B/aime24" in text
    report = check_controller(str(out), "Qwen3-8B/aime24", env_dir=env_dir, questions=3, seeds=2)
    # Every contract point holds but, possibly, cost monotonicity: the family's points cost
    # more from one β to the next in every search environment's raced means (over 3 seeds
    # here), which a check on 3 questions × 2 seeds need not reproduce.
    failed = [(i.name, i.detail) for i in report.items if not i.ok]
    assert all(name == "monotone cost" for name, _ in failed), failed
    assert [i.name for i in report.items] == [
        "import", "schedule", "runs", "deterministic", "monotone cost"
    ]  # fmt: skip
    trial = export_controller(run, tmp_path / "trial_3.py", candidate="3")
    assert check_controller(str(trial), "Qwen3-8B/aime24", env_dir=env_dir, questions=2, seeds=1).ok

    paths = render_report(RunDirectory(run))
    markdown = paths["markdown"].read_text()
    assert "## Trajectory" in markdown and "## Winning controller" in markdown
    assert paths["curves"].exists() and paths["trajectory"].exists()
    assert "<table>" in paths["html"].read_text()
    heldout = json.loads((run / "heldout.json").read_text())
    assert heldout["envs"] == ["Qwen3-8B/aime25"] and len(heldout["winner"]) == 11


def test_a_run_directory_is_not_overwritten(tmp_path, env_dir):
    run = tmp_path / "run"
    RunDirectory.create(run, {"strategy": "optuna"})
    done = subprocess.run(
        discover("-o", str(run), *SMALL, env_dir=env_dir), capture_output=True, text=True
    )
    assert done.returncode == 2 and "--resume" in done.stderr
    nothing = tmp_path / ("a-long-directory-name-" * 6) / "nothing"  # past 80 columns
    missing = subprocess.run(
        discover("--resume", str(nothing), env_dir=env_dir), capture_output=True, text=True
    )
    # piped, the message is never wrapped: the path and the reason stay on one line
    assert missing.returncode == 2 and f"{nothing}: not a discovery run" in missing.stderr


def test_truncated_history_line_is_ignored_and_appends_stay_readable(tmp_path):
    run = RunDirectory.create(tmp_path / "run", {"strategy": "optuna"})
    run.append({"event": "round", "trial": 0})
    with open(run.path / "history.jsonl", "a") as handle:
        handle.write('{"event": "round", "tri')  # a kill in the middle of a write
    assert [r["trial"] for r in run.rounds()] == [0]
    run.append({"event": "round", "trial": 1})
    assert [r["trial"] for r in run.rounds()] == [0, 1]


def test_json_prints_the_judgements_with_intervals(tmp_path, env_dir):
    run, store = tmp_path / "run", tmp_path / "mlruns"
    args = ("--trials", "3", *SMALL, "--json", "--mlflow", str(store))
    done = subprocess.run(
        discover("-o", str(run), *args, env_dir=env_dir),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # stdout holds the JSON alone
    assert result["run"] == str(run) and set(result) == {"run", "search", "heldout"}
    heldout = result["heldout"]
    assert heldout == json.loads((run / "heldout.json").read_text())
    for point in [*heldout["winner"], *heldout["cmc"], heldout["sc64"]]:
        low, high = point["accuracy_interval"]
        assert low <= point["accuracy"] <= high
    assert "confidence" in heldout["verdict"]
    assert "run directory:" in done.stderr

    # --mlflow: the run's settings, trajectory, judgements and report in a real MLflow store
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autotts-discovery")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.data.params["strategy"] == "optuna" and logged.data.params["trials"] == "3"
    assert logged.data.tags["autotts.run_dir"] == str(run)
    margin = heldout["verdict"]["margin_vs_cmc"]
    assert logged.data.metrics["heldout/verdict/margin_vs_cmc/low"] == pytest.approx(margin[1])
    history = client.get_metric_history(logged.info.run_id, "round/hypervolume")
    assert [m.step for m in history] == list(range(1, 3 + 2 * 3 + 1))  # and each window's 3
    assert [m.value for m in history] == sorted(m.value for m in history)  # never decreases
    files = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"report.md", "report.html", "heldout.json", "family"} <= files


def test_target_windows_hold_the_search_below_the_largest(tmp_path, env_dir):
    import optuna

    run = tmp_path / "run"
    args = ("--trials", "8", *SMALL, "--target", "0.2,0.4", "--window-trials", "3")
    done, directory = finished_discovery(run, env_dir, *args)
    assert directory.config["search"]["targets"] == [0.2, 0.4]
    sc64 = directory.stage_done("baseline")["sc64_tokens"]
    storage = f"sqlite:///{run / 'optuna.db'}"
    studies = (("structural", 0.4, 8), ("structural-window-0.2", 0.2, 3),
               ("structural-window-0.4", 0.4, 3))  # fmt: skip
    for name, share, count in studies:
        study = optuna.load_study(study_name=name, storage=storage)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) == count
        for trial in complete:  # the sampler sees whether a trial stayed inside its window
            tokens = trial.user_attrs["tokens"]
            assert trial.constraints["tokens"] == pytest.approx(tokens / (share * sc64) - 1)
    stages = [r["stage"] for r in directory.rounds()]
    assert stages == ["search"] * 8 + ["window-0.2"] * 3 + ["window-0.4"] * 3
    assert {r["candidate"] for r in directory.rounds() if r["stage"] == "window-0.4"} == {
        "20000", "20001", "20002"
    }  # fmt: skip
    anchors = json.loads((run / "search.json").read_text())["anchors"]
    assert anchors and all(a["tokens"] <= 0.4 * sc64 for a in anchors)
    assert "Within 30% of SC@64's tokens:" in done.stdout
    # the contenders were raced on seeds the search never played (--seeds 2: from seed 2 on)
    raced = json.loads((run / "race.json").read_text())
    assert directory.stage_done("race") and raced["seeds"] == [2, 4]
    assert {a["label"] for a in anchors} <= {c["label"] for c in raced["contenders"]}
    # the export is the judged family file (structure switches included), renamed
    exported = tmp_path / "exported.py"
    export = [sys.executable, "-m", "autotts.cli", "export", str(run), "-o", str(exported)]
    assert subprocess.run(export, capture_output=True).returncode == 0
    judged = (run / "family" / "controller.py").read_text()
    body = judged[judged.index('"""A β-family') :].replace('"discovered"', '"exported"')
    assert exported.read_text().endswith(body)
    for bad in ("abc", "1.5"):
        refused = subprocess.run(
            discover("-o", str(tmp_path / "no"), *SMALL, "--target", bad, env_dir=env_dir),
            capture_output=True, text=True,
        )  # fmt: skip
        assert refused.returncode == 2 and "--target" in refused.stderr
        assert not (tmp_path / "no").exists()


def test_without_windows_and_race_the_front_is_compressed_as_before(tmp_path, env_dir):
    run = tmp_path / "run"
    args = ("--trials", "8", *SMALL, "--target", "none", "--race-seeds", "0")
    _, directory = finished_discovery(run, env_dir, *args)
    assert directory.config["search"]["targets"] == []
    assert directory.config["search"]["race_seeds"] == 0
    assert not directory.stage_done("race") and not (run / "race.json").exists()
    assert [r["stage"] for r in directory.rounds()] == ["search"] * 8
    family = json.loads((run / "search.json").read_text())
    # the isotonic fit: one structure, at most 6 knots per knob, no switches
    assert family["switches"] == [] and all(len(k) <= 6 for k in family["knots"].values())
    refused = subprocess.run(
        discover("-o", str(tmp_path / "no"), *SMALL, "--race-seeds", "-1", env_dir=env_dir),
        capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode == 2 and "--race-seeds" in refused.stderr
