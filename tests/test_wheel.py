"""A built wheel works without the checkout: installed into a fresh virtual environment and
run from another directory, it finds its built-in controllers, agent prompts and graphs, and
evaluates, checks and discovers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd, **kwargs):
    process = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)
    assert process.returncode == 0, (args, process.stdout[-2000:], process.stderr[-2000:])
    return process.stdout


@pytest.mark.slow
def test_a_wheel_installs_and_runs_outside_the_checkout(tmp_path, env_dir):
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run([*pip_wheel, "-w", str(dist), str(ROOT)], cwd=tmp_path)
    (wheel,) = dist.glob("autotts-*.whl")
    # the dependencies come from this interpreter's site-packages; autotts from the wheel
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    python, autotts = venv / "bin" / "python", venv / "bin" / "autotts"
    run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)

    where = run(
        [python, "-c", "import autotts, autotts.loading.controller_files as l, autotts.discovery.replies as a; "
         "print(autotts.__file__); print(sorted(l.builtin_controllers())); "
         "print(a.PROMPTS / 'proposer_system.md')"],
        cwd=elsewhere,
    ).splitlines()  # fmt: skip
    assert where[0].startswith(str(venv)), where[0]
    assert "'cmc'" in where[1] and "'optuna-family'" in where[1]
    assert Path(where[2]).is_file() and where[2].startswith(str(venv))

    envs = ["--env-dir", str(env_dir)]
    run([autotts, "evaluate", "cmc", "-e", "Qwen3-8B/aime24", "--seeds", "2", "-o", "out", *envs],
        cwd=elsewhere)  # fmt: skip
    assert (elsewhere / "out" / "results.csv").is_file()
    run([autotts, "check", "cmc", *envs], cwd=elsewhere)
    run(
        [autotts, "discover", "--trials", "2", "--seeds", "1", "--final-seeds", "2",
         "--window-trials", "2", "--race-seeds", "2",
         "--search-env", "Qwen3-8B/aime24", "--heldout-env", "Qwen3-8B/aime25", "-o", "run",
         *envs],
        cwd=elsewhere,
    )  # fmt: skip
    assert json.loads((elsewhere / "run" / "heldout.json").read_text())
