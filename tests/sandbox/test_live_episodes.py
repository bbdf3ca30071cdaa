"""Untrusted controllers on live engines (:class:`autotts.sandbox.SandboxedController`): the
same protocol and parent-side engine as the sandboxed replay evaluation, one fresh isolated
worker per episode. A sandboxed live episode is the in-process one, request for request; the
worker never holds a branch's text or the reference answer; a backend failure ends the
episode as in process; the engine's generation time is not the worker's idle time; a worker
that computes forever ends its own episode only.

The engine here is the protocol double of a vLLM server (tests/llm_double.py), so that its
replies can be scripted; test_serve_live.py serves a marked controller on a real engine."""

from __future__ import annotations

import re
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import fixture_controller
from llm_double import VARIED, completions_double, varied_reply
from test_peeking import walker

from autotts.live.live_environment import LiveEnvironment, LiveQuestion
from autotts.live.server import OpenAIBackend
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import (
    ControllerLoadError,
    load_controller,
    mark_untrusted,
    resolve_controller_path,
)
from autotts.sandbox import (
    SandboxedController,
    SandboxLimits,
    isolation_problems,
    open_controller,
)

pytestmark = pytest.mark.skipif(
    bool(isolation_problems()), reason=f"no OS isolation here: {isolation_problems()}"
)

SETTINGS = LiveSettings(delta=32, max_branch_tokens=160, probe_tokens=6, temperature=0.0)
QUESTIONS = [LiveQuestion("What is 2 + 2?", "4"), LiveQuestion("What is 3 + 3?", "6")]


HANGS = Path(fixture_controller("hangs")).read_text(encoding="utf-8")
CANDIDATE = """
{imports}
from autotts import Branch, Controller

class Candidate(Controller):
    name = "candidate"

    @staticmethod
    def schedule(beta):
        return {{}}

    def run(self, state):
        yield Branch(1)
{body}
"""


def candidate(body: str, imports: str = "") -> str:
    """A controller that opens one branch, then runs ``body``."""
    return CANDIDATE.format(imports=imports, body=textwrap.indent(body, " " * 8))


def source_of(name: str) -> str:
    return resolve_controller_path(name).read_text(encoding="utf-8")


def played(controller, script, beta=0.5, seeds=(0, 1)):
    """Every (question, seed) episode of ``controller`` on a fresh double, and what it was
    asked."""
    with completions_double(script) as server:
        env = LiveEnvironment(OpenAIBackend(server.url), QUESTIONS, SETTINGS, max_branches=12)
        results = [
            env.run_episode(controller, controller.params(beta), q, seed)
            for q in range(len(QUESTIONS))
            for seed in seeds
        ]
        asked = sorted(str((r["prompt"], r.get("seed"), r["max_tokens"])) for r in server.requests)
    return results, asked


@pytest.mark.parametrize("name", ["sc", "cmc", "esc"])
def test_a_sandboxed_live_episode_is_the_in_process_one(name):
    trusted, asked_trusted = played(load_controller(name), varied_reply)
    with SandboxedController(source_of(name), name) as sandboxed:
        remote, asked_remote = played(sandboxed, varied_reply)
        assert sandboxed.last_params == load_controller(name).params(0.5)
    assert asked_remote == asked_trusted  # the very same requests
    for mine, theirs in zip(remote, trusted, strict=True):
        assert mine == theirs  # answer, reason, error, tokens, probe tokens, opened, steps
        assert mine.trace == theirs.trace and mine.trace


def test_a_marked_file_opens_sandboxed_and_a_plain_one_in_process(tmp_path):
    marked = tmp_path / "llm_cmc.py"
    marked.write_text(mark_untrusted(source_of("cmc"), "test"), encoding="utf-8")
    with open_controller(marked) as controller:
        assert isinstance(controller, SandboxedController) and controller.name == "llm_cmc"
    assert not isinstance(open_controller("cmc"), SandboxedController)
    with open_controller("cmc", sandbox=True) as forced:
        assert isinstance(forced, SandboxedController)
    refused = tmp_path / "refused.py"
    refused.write_text(mark_untrusted("import socket\n" + source_of("sc"), "test"))
    with pytest.raises(ControllerLoadError, match="static check"):
        open_controller(refused)


def test_the_worker_holds_no_branch_text_and_no_reference_answer():
    """A walker that reaches every object of its process finds no text the branch generated
    (only revealed answers are ever sent) and not the question's reference answer."""
    secret = ("zz-thinking-secret zz-second-secret", [21] * 32, "length")
    probe = ("zz-revealed}", [22], "stop")
    questions = [LiveQuestion("What?", "zz-gold")]
    for route in ("gc", "traceback", "modules", "greenlet"):
        with completions_double([secret, probe]) as server:
            env = LiveEnvironment(OpenAIBackend(server.url), questions, SETTINGS)
            with SandboxedController(
                walker(route), "walker", static_check=False, audit_hook=False
            ) as controller:
                result = env.run_episode(controller, controller.params(), 0, 0)
        assert result.answer == "clean", (route, result.answer, result.error)


IN_PROCESS = """
import sys
from autotts.live.live_environment import LiveEnvironment, LiveQuestion
from autotts.live.server import OpenAIBackend
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import controller_class_from_source
settings = LiveSettings(delta=32, max_branch_tokens=160, probe_tokens=6, temperature=0.0)
env = LiveEnvironment(OpenAIBackend(sys.argv[1]), [LiveQuestion("What?", "zz-gold")], settings)
controller = controller_class_from_source(sys.stdin.read(), "walker.py")()
print(env.run_episode(controller, {}, 0, 0).answer)
"""


def test_the_same_walker_in_process_finds_the_branch_text():
    """In process (here a fresh interpreter) the engine shares the walker's memory: the test
    above can fail."""
    import subprocess
    import sys

    secret = ("zz-thinking-secret", [21] * 32, "length")
    with completions_double([secret, ("zz-revealed}", [22], "stop")]) as server:
        done = subprocess.run(
            [sys.executable, "-c", IN_PROCESS, server.url],
            input=walker("gc"), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "zz-thinking-secret" in done.stdout and "zz-gold" in done.stdout, done.stdout


def test_a_backend_failure_ends_the_episode_as_in_process():
    def probes_fail(body: dict):
        return "error" if body["max_tokens"] == SETTINGS.probe_tokens else VARIED[0]

    trusted, _ = played(load_controller("cmc"), probes_fail, seeds=(0,))
    with SandboxedController(source_of("cmc"), "cmc") as sandboxed:
        remote, _ = played(sandboxed, probes_fail, seeds=(0,))

    def errors(results):  # (each double listens on its own port)
        return [re.sub(r"127\.0\.0\.1:\d+", "double", r.error) for r in results]

    assert remote[0].error.startswith("inference backend failed")
    assert errors(remote) == errors(trusted)
    assert [r.tokens for r in remote] == [r.tokens for r in trusted]


def test_time_the_engine_spends_generating_is_not_the_workers_idle_time():
    """A generation that takes 3 s, with 0.5 s of idle allowance: the worker waits on the
    parent, which is not idling."""
    barrier = threading.Barrier(2)
    threading.Timer(3.0, lambda: barrier.wait(timeout=30)).start()
    script = [("So the answer is \\boxed{4}", [17] * 9, "stop", "wait")]
    limits = SandboxLimits(cpu_s=30, idle_s=0.5, wall_s=float("inf"))
    with completions_double(script, barrier) as server:
        env = LiveEnvironment(OpenAIBackend(server.url), QUESTIONS[:1], SETTINGS)
        with SandboxedController(source_of("sc"), "sc", limits=limits) as controller:
            result = env.run_episode(controller, controller.params(0.0), 0, 0)
    assert result.error is None and result.answer == "4"


def test_a_worker_computing_forever_ends_its_own_episode_with_the_tokens_spent():
    limits = SandboxLimits(cpu_s=20, step_cpu_s=1.0, wall_s=float("inf"))
    script = [("Step one. ", [11] * 32, "length"), ("4}", [12, 13], "stop")]
    with completions_double(script) as server:
        env = LiveEnvironment(OpenAIBackend(server.url), QUESTIONS[:1], SETTINGS)
        with SandboxedController(HANGS, "hangs", limits=limits) as controller:
            result = env.run_episode(controller, controller.params(), 0, 0)
    assert result.answer is None
    assert result.error.startswith("sandbox: CPU-time limit exceeded: a round took more")
    assert result.tokens == 32 + 2 and result.opened == 1  # what the engine spent


def test_autotts_validate_plays_a_marked_file_sandboxed_with_the_same_numbers(tmp_path, env_dir):
    """``autotts validate`` of a marked file: live episodes and the replay prediction (the
    batched sandboxed evaluation) give CMC's numbers in process, trace for trace."""
    import json

    from typer.testing import CliRunner

    from autotts.cli import app

    marked = tmp_path / "llm_cmc.py"
    marked.write_text(mark_untrusted(source_of("cmc"), "test"), encoding="utf-8")
    reports, outputs = {}, []
    with completions_double(varied_reply) as server:
        for name, target in (("sandboxed", str(marked)), ("in process", "cmc")):
            out = tmp_path / name
            done = CliRunner().invoke(app, [
                "validate", target, "--backend", "openai", "--base-url", server.url,
                "--questions", "replay:Qwen3-8B/aime24", "--limit", "2", "--seeds", "2",
                "--delta", "32", "--max-branch-tokens", "160", "--probe-tokens", "6",
                "--temperature", "0", "--episodes-in-flight", "2",
                "--replay-env", "Qwen3-8B/aime24", "--env-dir", str(env_dir), "-o", str(out),
            ])  # fmt: skip
            assert done.exit_code == 0, done.output
            outputs.append(done.output)
            reports[name] = json.loads((out / "results.json").read_text())
            lines = (out / "traces.jsonl").read_text().splitlines()
            reports[name]["traces"] = [json.loads(line) for line in lines]
    mine, theirs = reports["sandboxed"], reports["in process"]
    assert mine["params"] == theirs["params"]  # computed in the sandbox
    for key in ("accuracy", "tokens", "probe_tokens", "episodes", "errors"):
        assert mine["live"][key] == theirs["live"][key]
    assert mine["replay"] == theirs["replay"] and mine["replay"]["episodes"] == 200
    assert mine["live"]["interval"] == theirs["live"]["interval"]
    assert mine["comparison"] == theirs["comparison"] and mine["comparison"]["questions"] == 2
    comparison, interval = mine["comparison"], mine["replay"]["interval"]
    assert comparison["low"] <= comparison["difference"] <= comparison["high"]
    assert interval["low"] <= mine["replay"]["accuracy"] <= interval["high"]
    assert "on the 2 matched questions, live " in outputs[0]
    assert comparison["verdict"] == "no verdict on fewer than 20 matched questions"
    labels = ("controller", "setting", "params")
    for a, b in zip(mine["traces"], theirs["traces"], strict=True):
        assert {k: v for k, v in a.items() if k not in labels} == {
            k: v for k, v in b.items() if k not in labels
        }


HALF_A_FRAME = candidate(  # half a frame, then wait for an answer to it
    'os.write(1, b"\\x00\\x00\\x00\\x05P")\nos.read(0, 1)', imports="import os"
)


def test_a_worker_waiting_on_half_a_frame_is_idle_not_waiting_on_the_engine():
    limits = SandboxLimits(cpu_s=20, idle_s=1.0)
    with completions_double(varied_reply) as server:
        env = LiveEnvironment(OpenAIBackend(server.url), QUESTIONS[:1], SETTINGS)
        with SandboxedController(
            HALF_A_FRAME, "half", limits=limits, static_check=False, audit_hook=False
        ) as controller:
            result = env.run_episode(controller, controller.params(), 0, 0)
    assert result.error.startswith("sandbox: the worker stopped computing for 1 s")


def test_an_abandoned_episode_ends_its_worker_at_once():
    """A served request whose client left: its worker (here blocked, with a long idle
    allowance) is killed within a fraction of a second, not at the limits."""
    from autotts.serving.request_episodes import RequestBackend

    limits = SandboxLimits(cpu_s=60, idle_s=600)
    with completions_double(varied_reply) as server:
        backend = RequestBackend(OpenAIBackend(server.url))
        env = LiveEnvironment(backend, QUESTIONS[:1], SETTINGS)
        threading.Timer(1.0, backend.cancel).start()
        with SandboxedController(
            HALF_A_FRAME, "half", limits=limits, static_check=False, audit_hook=False
        ) as controller:
            result = env.run_episode(controller, controller.params(), 0, 0)
    assert result.error == "sandbox: the episode was abandoned (its client left)"
    assert result.seconds < 10


def test_a_sandboxed_episode_leaves_no_cycle_holding_its_engine():
    """The server's garbage collector is left as it is while a sandboxed episode plays (on,
    then off), and with it off the engine (every branch's tokens and text) is still freed as
    soon as the episode is done: no cycle holds it."""
    import gc
    import weakref

    from autotts.core.engine import EpisodeResult, play
    from autotts.live.live_environment import LiveEpisode

    def result():
        return EpisodeResult(0, 0, None, 0, 0, 0, 0)

    with completions_double(varied_reply) as server:
        env = LiveEnvironment(OpenAIBackend(server.url), QUESTIONS[:1], SETTINGS)
        seen = []
        server.script = lambda body: seen.append(gc.isenabled()) or varied_reply(body)
        with SandboxedController(source_of("cmc"), "cmc") as controller:
            assert gc.isenabled()
            play(LiveEpisode(env, 0, 0), controller, controller.params(0.5), result(), 100)
            assert seen and all(seen)  # on, as it was
            seen.clear()
            episode = LiveEpisode(env, 0, 1)
            gc.disable()
            try:
                play(episode, controller, controller.params(0.5), result(), 100)
                freed = weakref.ref(episode)
                del episode
                assert freed() is None
            finally:
                gc.enable()
            assert seen and not any(seen)  # off, as it was


def test_live_engines_refuse_what_would_flood_or_break_the_backend():
    """A branch listed many times in one probe is decoded once; a Generate prompt that is not
    valid Unicode is refused as an action; Read(0) opens nothing, without an error."""
    from autotts.core.contract import ActionError
    from autotts.live.live_environment import LiveEpisode

    with completions_double(varied_reply) as server:
        env = LiveEnvironment(OpenAIBackend(server.url), QUESTIONS[:1], SETTINGS)
        episode = LiveEpisode(env, 0, 0)
        episode.extend(episode.open(1), 1, probe=False)
        sent = len(server.requests)
        episode.probe([0] * 500)
        assert len(server.requests) == sent + (0 if episode.done[0] else 1)
        with pytest.raises(ActionError, match="not valid Unicode"):
            episode.generate("\ud800", None, 4)
        assert list(episode.read(0)) == []


def test_the_same_runner_plays_replay_episodes_as_in_process(env_dir):
    """One runner: a replay environment's episode played by a SandboxedController is the
    in-process one, trace included (the batched sandboxed evaluation is the fast path)."""
    from autotts.envs.replay import ReplayEnvironment

    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    for name in ("cmc", "esc"):
        trusted = load_controller(name)
        with SandboxedController(source_of(name), name) as sandboxed:
            for question, seed in ((0, 0), (3, 1), (7, 2)):
                mine = env.run_episode(sandboxed, sandboxed.params(0.3), question, seed)
                theirs = env.run_episode(trusted, trusted.params(0.3), question, seed)
                assert mine == theirs and mine.trace == theirs.trace


WHERE_AM_I = candidate(
    'pid = operator.attrgetter("sys.modules")(dataclasses)["os"].getpid()  # (unchecked)\n'
    'return "pid1" if pid == 1 else "elsewhere"',
    imports="import dataclasses\nimport operator",
)


@pytest.mark.parametrize("command", ["validate", "serve"])
def test_validate_and_serve_run_a_marked_file_in_the_sandbox_only(command, tmp_path, env_dir):
    """A marked file the static check lets through runs as PID 1 of the worker's namespace,
    never in the trusted process."""
    import json

    import openai
    from typer.testing import CliRunner

    from autotts.cli import app
    from autotts.serving import app as serve_app
    from autotts.serving import serving

    marked = tmp_path / "where_am_i.py"
    marked.write_text(mark_untrusted(WHERE_AM_I, "test"), encoding="utf-8")
    with completions_double(varied_reply) as server:
        if command == "serve":
            with serving(serve_app([str(marked)], OpenAIBackend(server.url), SETTINGS)) as url:
                client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
                reply = client.chat.completions.create(
                    model="where-am-i", messages=[{"role": "user", "content": "Where?"}]
                )
            answer = reply.model_extra["autotts"]["stop_reason"] + reply.choices[0].message.content
        else:
            done = CliRunner().invoke(app, [
                "validate", str(marked), "--backend", "openai", "--base-url", server.url,
                "--questions", "replay:Qwen3-8B/aime24", "--limit", "1", "--env-dir",
                str(env_dir), "--delta", "32", "--max-branch-tokens", "160", "-o",
                str(tmp_path / "out"),
            ])  # fmt: skip
            assert done.exit_code == 0, done.output
            trace = (tmp_path / "out" / "traces.jsonl").read_text().splitlines()[0]
            answer = json.loads(trace)["answer"]
    assert "pid1" in answer and "elsewhere" not in answer
