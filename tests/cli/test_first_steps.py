"""What a newcomer meets first: the version, the list of built-in controllers, a broken file
refused up front, run outputs out of `git status`, help that is never cut when piped, curve
summaries that do not depend on the company a curve keeps, and progress in every stage."""

import json
import re
import subprocess
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

import autotts
from autotts.cli import app
from autotts.cli.common import RESULTS_DIR
from autotts.loading.controller_files import UNTRUSTED_MARK, builtin_controllers
from autotts.loading.run_configs import parse_spec, refuse_unloadable
from autotts.results.curve_summaries import curve_summaries
from autotts.results.run_directory import RUNS_DIR
from autotts.results.stats import hypervolume

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"autotts {autotts.__version__}"


def test_controllers_lists_every_builtin_with_its_schedule():
    listed = json.loads(runner.invoke(app, ["controllers", "--json"]).output)
    assert [e["name"] for e in listed] == list(builtin_controllers())
    for entry in listed:
        assert "error" not in entry, entry
        assert entry["description"] and entry["parameters"]
        assert set(entry["schedule"]) == {"0", "0.5", "1"}
    esc = next(e for e in listed if e["name"] == "esc")
    assert esc["schedule"]["0"] == {"n": 8, "window": 8} and esc["schedule"]["1"]["n"] == 64
    table = runner.invoke(app, ["controllers"]).output
    assert "n: 8 → 32 → 64" in table and "window: 8" in table
    assert "autotts controllers" in runner.invoke(app, ["evaluate", "--help"]).output


def test_a_file_that_cannot_load_is_refused_before_any_episode(tmp_path, env_dir):
    broken = tmp_path / "broken.py"
    broken.write_text(
        "from autotts import Controller\nclass C(Controller):\n    def run(self, s)\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["evaluate", str(broken), "--env-dir", str(env_dir), "--seeds", "1", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert result.output.count(f"{broken}:3: syntax error") == 1
    assert not out.exists()  # nothing ran, nothing was written


def test_marked_and_sandboxed_files_are_only_parsed_up_front(tmp_path):
    sentinel = tmp_path / "imported"
    body = (
        f"open({str(sentinel)!r}, 'w').close()\n"
        "from autotts import Answer, Controller\n"
        "class C(Controller):\n"
        "    @staticmethod\n"
        "    def schedule(beta):\n"
        "        return {}\n"
        "    def run(self, state):\n"
        "        return Answer('1', '')\n"
        "        yield\n"
    )
    marked = tmp_path / "marked.py"
    marked.write_text(f"{UNTRUSTED_MARK} (test)\n{body}")
    plain = tmp_path / "plain.py"
    plain.write_text(body)
    refuse_unloadable(parse_spec(f"{marked}@beta=0"))
    refuse_unloadable(parse_spec(f"{plain}@beta=0"), sandbox=True)
    assert not sentinel.exists()  # neither file ran in this process
    (tmp_path / "bad.py").write_text(f"{UNTRUSTED_MARK} (test)\nclass C(:\n")
    with pytest.raises(autotts.BadInput, match=r"bad.py:2: syntax error"):
        refuse_unloadable(parse_spec(f"{tmp_path / 'bad.py'}@beta=0"))
    refuse_unloadable(parse_spec(f"{plain}@beta=0"))  # trusted: imported, as it would run
    assert sentinel.exists()


def test_run_outputs_stay_out_of_git_status():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [f"{RUNS_DIR}/20260101-000000/config.json", f"{RESULTS_DIR}/x/results.csv"]
    ignored = subprocess.run(
        ["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == paths


def _commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_is_never_cut_when_piped():
    """Every word of every command's and option's help appears in its piped help (a word
    cut short with "…", or markup-like text such as ``[tracking]`` eaten, fails)."""
    for path, command in _commands(typer.main.get_command(app)):
        shown = runner.invoke(app, [*path, "--help"]).output
        text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", shown).split())
        helps = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for word in " ".join(helps).replace("\\[", "[").split():
            assert word in text, (path, word)


def test_hypervolume_of_a_curve_does_not_depend_on_its_company(env_dir):
    alone = autotts.evaluate("cmc@beta=0,0.5,1", "Qwen3-8B/aime24", seeds=3, env_dir=env_dir)
    together = autotts.evaluate(
        ["cmc@beta=0,0.5,1", "sc@n=1,64,128"], "Qwen3-8B/aime24", seeds=3, env_dir=env_dir
    )
    (one,) = curve_summaries(alone)
    two = next(s for s in curve_summaries(together) if s["controller"] == "cmc")
    assert one["hypervolume"] == two["hypervolume"] > 0
    env = autotts.ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    ceiling = sum(sum(q.tokens) for q in env.questions) / len(env)
    assert one["hypervolume_reference"] == pytest.approx(ceiling)
    points = [(r.tokens, r.accuracy) for r in alone.rows]
    assert one["hypervolume"] == pytest.approx(hypervolume(points, ceiling))


def test_tokens_to_match_sc64_without_sc64_in_the_run(env_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTTS_CACHE_DIR", str(tmp_path / "cache"))
    common = ["--env-dir", str(env_dir), "--seeds", "3", "--json"]
    runs = {}
    for label, args in (
        ("alone", ["evaluate", "cmc", "--betas", "0,0.5,1"]),
        ("cached", ["evaluate", "cmc", "--betas", "0,0.5,1"]),
        ("together", ["compare", "cmc@beta=0,0.5,1", "sc@n=64"]),
    ):
        out = tmp_path / label
        result = runner.invoke(app, [*args, *common, "-o", str(out)])
        assert result.exit_code == 0, result.output
        rows = (out / "summary.csv").read_text().splitlines()
        runs[label] = next(r for r in rows if r.startswith("cmc,"))
    (entry,) = (tmp_path / "cache" / "baselines").glob("sc64-*-3seeds-exact-v1.json")
    assert runs["alone"] == runs["cached"] == runs["together"]
    assert runs["alone"].split(",")[7]  # tokens_to_match filled
    entry.write_text("{not json")  # a damaged entry is evaluated again, never trusted
    result = runner.invoke(
        app, [*["evaluate", "cmc", "--betas", "0,0.5,1"], *common, "-o", str(tmp_path / "again")]
    )
    assert result.exit_code == 0
    assert (
        next(
            r
            for r in (tmp_path / "again" / "summary.csv").read_text().splitlines()
            if r.startswith("cmc,")
        )
        == runs["alone"]
    )
    assert json.loads(entry.read_text())["questions"] == list(range(30))


def test_every_later_stage_counts_its_progress(env_dir, tmp_path):
    stage, counts = "search", {}

    def log(text):
        nonlocal stage
        stage = text

    def progress(done, total, point):
        counts.setdefault(stage, []).append((done, total))

    autotts.discover(
        search_envs=["Qwen3-0.6B/aime24", "Qwen3-1.7B/aime24"],
        heldout_envs=["Qwen3-0.6B/aime25"],
        run_dir=tmp_path / "run",
        seeds=2,
        final_seeds=2,
        trials=3,
        targets=(),
        race_seeds=2,
        env_dir=env_dir,
        progress=progress,
        log=log,
    )
    assert set(counts) == {"search", "race", "family", "heldout"}
    for name, seen in counts.items():
        done, total = seen[-1]
        assert done == total and total >= 2, (name, seen)  # counted to the end
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert counts["race"][-1] == (2, 2)  # one count per search environment


def test_plain_progress_names_each_stage(capsys):
    from rich.console import Console

    from autotts.cli.progress import DiscoveryProgress

    console = Console(stderr=True, force_terminal=False, width=120)
    with DiscoveryProgress(console, trials=3) as shown:
        shown.progress(3, 3, None)
        shown.log("race")
        shown.progress(2, 2, None)
    err = capsys.readouterr().err
    assert "search trials: 3/3 (100 %)" in err
    assert "stage: race" in err and "race: environments: 2/2 (100 %)" in err


def test_a_baseline_never_reached_reads_never(monkeypatch, capsys):
    from autotts.cli import main

    summary = {
        "controller": "mine", "env": "e", "auc": 50.0, "hypervolume": 9.0,
        "hypervolume_reference": 1_821_290.9, "arise": 0.01, "tokens_to_match": 358_900.0,
        "tokens_to_match_interval": [295_600.0, float("inf")],
    }  # fmt: skip
    monkeypatch.setattr(
        "autotts.results.curve_summaries.curve_summaries", lambda *a, **k: [summary]
    )
    main._print_summaries(None)
    shown = capsys.readouterr().out
    assert "358.9k [295.6k, never]" in shown and "inf" not in shown
