"""Several `autotts discover` workers on one Optuna study in a real PostgreSQL server (the
README's recipe): the system's PostgreSQL binaries, else the ones the `pgserver` wheel ships
(a `dev` dependency); skipped, with the reason, only where neither exists."""

import glob
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import SMALL_DISCOVERY

from autotts.results.run_directory import RunDirectory


def postgres_bin() -> Path | None:
    """A directory holding initdb, postgres and pg_isready."""
    found = shutil.which("pg_ctl")
    candidates = [Path(os.path.realpath(found)).parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    spec = importlib.util.find_spec("pgserver")  # located, not imported (it sets up dirs)
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for folder in candidates:
        if all((folder / tool).exists() for tool in ("initdb", "postgres", "pg_isready")):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (as `nobody` when run as root: the server
    refuses root), with an `autotts` database; yields its SQLAlchemy URL."""
    pytest.importorskip("psycopg", reason="psycopg (the README's driver) is not installed")
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries: neither on this system nor from the pgserver wheel")
    user = "nobody" if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="autotts-pg-"))
    if user:
        shutil.chown(home, user)
    run_as = {"user": user} if user else {}
    data, port = home / "data", free_port()
    subprocess.run(
        [bindir / "initdb", "-D", data, "-U", "autotts", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True, **run_as,
    )  # fmt: skip
    with open(home / "server.log", "w") as log:  # the server keeps its own handle
        server = subprocess.Popen(
            [bindir / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", home],
            stdout=subprocess.DEVNULL, stderr=log, **run_as,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(
            [bindir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            assert time.monotonic() < deadline, (home / "server.log").read_text()
            time.sleep(0.2)
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="autotts", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE autotts")
        yield f"postgresql://autotts@127.0.0.1:{port}/autotts"  # the README recipe's form
    finally:
        server.send_signal(signal.SIGINT)  # "fast" shutdown: clients still connected are cut
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def worker(run: Path, url: str, env_dir, trials: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "autotts.cli", "discover", "-o", str(run)]
    command += ["--storage", url, "--study", "shared-aime24", "--trials", str(trials)]
    command += [*SMALL_DISCOVERY, "--workers", "1", "--env-dir", str(env_dir), "--json"]
    command += ["--target", "none"]  # the structural study alone (window studies share alike)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(
    tmp_path, env_dir, postgres_url
):
    import optuna

    runs = [tmp_path / "w1", tmp_path / "w2"]
    workers = [worker(runs[0], postgres_url, env_dir, trials=8)]
    deadline = time.monotonic() + 120
    while not (runs[0] / "history.jsonl").exists() or not RunDirectory(runs[0]).rounds():
        if workers[0].poll() is not None:
            pytest.fail(f"the first worker stopped: {workers[0].communicate()[1][-3000:]}")
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers.append(worker(runs[1], postgres_url, env_dir, trials=8))  # joins a running study
    for proc in workers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert json.loads(out)["heldout"]["verdict"]  # each worker judged its own family

    study = optuna.load_study(study_name="shared-aime24", storage=postgres_url)
    states = {t.state for t in study.trials}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    rounds = {run: [r["trial"] for r in RunDirectory(run).rounds()] for run in runs}
    # every worker ran its 8 trials; the study holds exactly those 16, none twice, none lost
    assert [len(r) for r in rounds.values()] == [8, 8]
    assert sorted(rounds[runs[0]] + rounds[runs[1]]) == sorted(t.number for t in complete)
    assert len(complete) == 16 and optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.FAIL not in states  # no worker failed the other's trials
    # each trial names the worker that ran it, and that worker recorded the same values
    by_number = {t.number: t for t in complete}
    for run in runs:
        for record in RunDirectory(run).rounds():
            trial = by_number[record["trial"]]
            assert trial.user_attrs["run"] == str(run.resolve())
            assert trial.values == record["values"]
    # one shared sampler history: the 5 CMC warm starts were run once in all, not per worker
    warm = [t for t in complete if t.system_attrs.get("fixed_params")]
    assert len(warm) == 5
