"""Hostile candidates, one class of attack per test.

Each candidate runs twice: through :func:`evaluate_candidate` (the path the LLM proposer
uses, every layer on), and through :func:`run_sandboxed` with both Python-level layers
(static check, audit hook) switched off, so that the operating-system layer alone has to
contain it. Either way: nothing outside the private temp dir changes, no process outlives the
evaluation, and an accepted candidate's tokens are the parent's own recomputation.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from autotts.discovery.candidates import evaluate_candidate
from autotts.loader import load_controller
from autotts.replay import ReplayEnvironment
from autotts.sandbox import SandboxLimits, isolation_problems, run_sandboxed
from autotts.store import load_environment_records

pytestmark = pytest.mark.skipif(
    bool(isolation_problems()), reason=f"no OS isolation here: {isolation_problems()}"
)

ENV = "Qwen3-8B/aime24"
LIMITS = SandboxLimits(memory_mb=1024, cpu_s=20, episode_cpu_s=2.0, idle_s=3)

TEMPLATE = """
import dataclasses
from autotts import Branch, Continue, Controller

sys = dataclasses.sys  # reachable without an import or a dunder
os = sys.modules["os"]

{prelude}

def attempt(state):
{body}

class Hostile(Controller):
    name = "hostile"

    @staticmethod
    def schedule(beta):
        return {{"width": 1 + round(3 * beta)}}

    def run(self, state, width):
        ids = yield Branch(width)
        try:
            outcome = attempt(state)
        except BaseException as exc:
            return "contained: " + type(exc).__name__
        if outcome is not None:
            return "escaped: " + str(outcome)[:200]
        while state.active():
            yield Continue(state.active())
        return state.finals[0]
"""


def hostile(body: str, prelude: str = "") -> str:
    return TEMPLATE.format(
        body="\n".join("    " + line for line in body.splitlines()), prelude=prelude
    )


@pytest.fixture(scope="module")
def envs(env_dir):
    records = load_environment_records(ENV, env_dir)[:2]
    return {ENV: ReplayEnvironment(ENV, records)}


@pytest.fixture(autouse=True)
def no_process_outlives_the_evaluation():
    yield
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"autotts.sandbox.worker" in cmdline:
                leftovers.append(entry.name)
    assert not leftovers, f"sandbox processes left running: {leftovers}"


def os_layer_only(source: str, envs, limits=LIMITS):
    return run_sandboxed(
        source, envs, [(0.0, {}), (1.0, {})], 2, limits=limits, static_check=False, audit_hook=False
    )


def both_paths(source: str, envs, limits=LIMITS):
    """(proposer path, OS layer alone); neither may report an escape."""
    proposer = evaluate_candidate(source, envs, [0.0, 1.0], 2, limits=limits)
    alone = os_layer_only(source, envs, limits)
    answers = [r.answer or "" for *_, r in alone.results]
    assert not any(a.startswith("escaped") for a in answers), answers
    for point in proposer.curve:  # an accepted proposer result holds no escape either
        assert point["accuracy"] <= 100.0
    return proposer, alone


def honest_tokens(envs):
    """Tokens an honest version of the template spends (the parent must find exactly these)."""
    honest = hostile("return None")
    return _tokens(run_sandboxed(honest, envs, [(0.0, {}), (1.0, {})], 2, limits=LIMITS))


def _tokens(outcome):
    return sorted((i, q, r.seed, r.tokens) for i, _, q, r in outcome.results)


# --- the machine: processes, files, network -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        'rc = os.system("touch {marker}")\nif rc:\n    raise OSError(rc)\nreturn rc',
        'return os.posix_spawn("/bin/sh", ["sh", "-c", "touch {marker}"], {{}})',
        'pid = os.fork()\nif pid == 0:\n    os.execv("/bin/sh", ["sh", "-c", "touch {marker}"])\nreturn pid',
        'import subprocess\nreturn subprocess.run(["touch", "{marker}"])',
        'libc = sys.modules["ctypes"].CDLL(None)\nrc = libc.system(b"touch {marker}")\nif rc:\n    raise OSError(rc)\nreturn rc',
    ],
    ids=["os.system", "posix_spawn", "fork-exec", "subprocess", "ctypes-system"],
)
def test_shell_commands_do_not_run(body, envs, tmp_path):
    marker = tmp_path / "ran"
    both_paths(hostile(body.format(marker=marker)), envs)
    assert not marker.exists()


def test_files_outside_cannot_be_deleted_or_written(envs, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    body = f'os.unlink("{victim}")\nopen("{tmp_path}/new.txt", "w").write("x")\nreturn "deleted"'
    both_paths(hostile(body), envs)
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]


def test_the_private_temp_dir_is_not_writable_either(envs):
    _, alone = both_paths(hostile('open("here.txt", "w").write("x")\nreturn "wrote"'), envs)
    assert alone.ok  # contained: the write failed, the candidate went on honestly


@pytest.mark.parametrize(
    "path_of",
    [
        lambda env_dir: Path(env_dir) / "README.md",
        lambda env_dir: Path(env_dir) / "Qwen3-8B" / "aime24.json",
        lambda env_dir: Path("/proc/self/environ"),
        lambda env_dir: Path(__file__),
        lambda env_dir: Path.home(),
    ],
    ids=["stores-readme", "store", "proc-environ", "project", "home"],
)
def test_stores_project_home_and_proc_cannot_be_read(path_of, envs, env_dir):
    path = path_of(env_dir)
    body = (
        f'p = "{path}"\n'
        "if os.path.isdir(p):\n    return os.listdir(p)\n"
        "with open(p, 'rb') as f:\n    return f.read(64)"
    )
    _, alone = both_paths(hostile(body), envs)
    assert alone.ok and all(r.answer.startswith("contained") for *_, r in alone.results)


def test_gold_answers_cannot_be_looked_up(envs, env_dir):
    """The classic cheat: read the store, answer with the gold at 0 tokens."""
    store = Path(env_dir) / "Qwen3-8B" / "aime24.json"
    body = (
        f'import json\nrecords = json.load(open("{store}"))\n'
        "return [r for r in records if r['question'] == state.question][0]['gold_answer']"
    )
    _, alone = both_paths(hostile(body), envs)
    assert alone.ok and all(r.answer.startswith("contained") for *_, r in alone.results)


def test_numpy_is_preloaded_but_reaches_no_file(envs, env_dir):
    """numpy (allowed for AutoTTS-API method files) is imported before the lock-down; its own
    file readers then fail like open() does, with or without the Python-level layers."""
    store = Path(env_dir) / "Qwen3-8B" / "aime24.json"
    source = hostile(f'return np.fromfile("{store}", dtype=np.uint8)[:64]', "import numpy as np")
    proposer, alone = both_paths(source, envs)
    assert proposer.ok, proposer.reason
    for outcome in (alone, run_sandboxed(source, envs, [(0.0, {})], 1, limits=LIMITS)):
        assert outcome.ok and all(r.answer.startswith("contained") for *_, r in outcome.results)


def test_no_network(envs):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        body = (
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "s.sendall(b'GET /leak HTTP/1.0\\r\\n\\r\\n')\nreturn s.recv(100)"
        )
        both_paths(hostile(body), envs)
        ctypes_body = (
            'libc = sys.modules["ctypes"].CDLL(None)\nfd = libc.socket(2, 1, 0)\n'
            "return fd if fd >= 0 else None"
        )
        both_paths(hostile(ctypes_body), envs)
    finally:
        server.shutdown()
    assert hits == []


def test_signals_to_other_processes_are_refused(envs):
    body = "os.kill(os.getppid() or 1, 9)\nos.killpg(0, 9)\nreturn 'signalled'"
    _, alone = both_paths(hostile(body), envs)
    assert alone.ok  # the candidate survived its own attempt, and so did everything else


def test_no_detached_process_survives(envs, tmp_path):
    marker = tmp_path / "late"
    body = (
        "pid = os.fork()\nif pid == 0:\n    os.setsid()\n"
        f"    sys.modules['time'].sleep(2)\n    open('{marker}', 'w').close()\n    os._exit(0)\n"
        "return pid"
    )
    both_paths(hostile(body, prelude="import time"), envs)
    import time

    time.sleep(2.5)
    assert not marker.exists()


# --- the engine: costs the candidate would like to lower -------------------------------------


def test_patching_the_engine_at_import_changes_no_cost(envs):
    prelude = (
        "replay = sys.modules['autotts.replay']\n"
        "replay._Episode._charge = lambda self, tokens, probe_tokens=0: None\n"
    )
    source = hostile("return None", prelude)
    outcome = os_layer_only(source, envs)
    assert outcome.ok
    assert _tokens(outcome) == honest_tokens(envs)
    assert all(r.tokens > 0 for *_, r in outcome.results)


def test_reaching_the_episode_through_frames_changes_no_cost(envs):
    body = (
        "import operator, gc\n"
        "for obj in gc.get_objects():\n"
        "    if type(obj).__name__ == '_Episode':\n"
        "        obj.tokens = 1\n"
        "frame = operator.attrgetter('f_back')(sys._getframe())\n"
        "while frame is not None:\n"
        "    ep = frame.f_locals.get('episode')\n"
        "    if ep is not None:\n        ep.tokens = 1\n"
        "    frame = frame.f_back\n"
        "return None"
    )
    outcome = os_layer_only(hostile(body), envs)
    assert outcome.ok
    assert _tokens(outcome) == honest_tokens(envs)


@pytest.mark.parametrize(
    "action",
    [
        "Continue(ids, steps=2**62)",
        "Continue(ids, steps=-2**62)",
        "Continue(ids, steps=[2**40] * len(ids))",
        "Continue(ids, steps=Huge(1))",
        "Continue([Huge(i) for i in ids])",
        "Continue([True])",
        "Continue(ids, probe=Huge(1))",
    ],
    ids=["huge-steps", "negative-steps", "huge-step-list", "int-subclass-steps",
         "int-subclass-ids", "bool-id", "non-bool-probe"],
)  # fmt: skip
def test_hostile_action_arguments_are_refused(action, envs):
    prelude = (
        "class Huge(int):\n"
        "    def __mul__(self, other):\n        return -10**9\n"
        "    __rmul__ = __mul__\n"
        "    def __sub__(self, other):\n        return -10**9\n"
        "    def __lt__(self, other):\n        return False\n"
        "    def __ge__(self, other):\n        return True\n"
    )
    source = TEMPLATE.format(body="    return None", prelude=prelude).replace(
        "            yield Continue(state.active())",
        f"            ids = state.active()\n            yield {action}",
    )
    result = evaluate_candidate(source, envs, [0.0, 1.0], 2, limits=LIMITS)
    assert not result.ok and "episodes failed" in result.reason
    outcome = os_layer_only(source, envs)
    assert all(r.error for *_, r in outcome.results)
    assert all(r.tokens >= 0 for *_, r in outcome.results)


# --- the reply: the worker process lies ------------------------------------------------------

HEADER = 'os.write(1, b"P\\t[{}, {}]\\n")\n'
FORGERIES = {
    "nan-in-the-header": 'os.write(1, b"P\\t[{}, {\\"n\\": NaN}]\\n")',
    "huge-int-in-the-header": 'os.write(1, b"P\\t[{}, {\\"n\\": ' + "9" * 40 + '}]\\n")',
    "some-units-only": HEADER + 'os.write(1, b"0\\t31\\t-\\t\\tb11\\n")',
    "unit-out-of-order": HEADER + 'os.write(1, b"3\\t31\\t-\\t\\tb11\\n")',
    "actions-that-do-not-replay": HEADER + 'os.write(1, b"0\\t31\\t-\\t\\tb11;c11:05\\n")',
    "answer-and-error": HEADER + 'os.write(1, b"0\\t31\\t31\\t\\tb11\\n")',
    "answer-not-hex": HEADER + 'os.write(1, b"0\\t3 1\\t-\\t\\tb11\\n")',
    "answer-not-utf8": HEADER + 'os.write(1, b"0\\tff\\t-\\t\\tb11\\n")',
    "answer-too-long": HEADER + 'os.write(1, b"0\\t" + b"31" * 1001 + b"\\t-\\t\\tb11\\n")',
    "extra-field": HEADER + 'os.write(1, b"0\\t31\\t-\\t\\tb11\\tx\\n")',
    "non-ascii-actions": HEADER + 'os.write(1, b"0\\t31\\t-\\t\\tb\\xc3\\xa911\\n")',
    "pickle-payload": 'os.write(1, b"\\x80\\x05\\x95junk\\n")',
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_replies_are_rejected_without_crashing(forgery, envs):
    body = FORGERIES[forgery] + "\nos._exit(0)"
    source = TEMPLATE.format(body="    return None", prelude=body)
    outcome = os_layer_only(source, envs)
    assert not outcome.ok
    assert "malformed reply" in outcome.reason, outcome.reason


def test_forged_episode_results_are_recomputed(envs):
    """The worker's episode results are its own to forge (zero tokens, a shorter log
    listing an action that never ran): the parent replays the log and refuses what does
    not replay."""
    prelude = (
        "protocol = sys.modules['autotts.sandbox.protocol']\n"
        "_encode = protocol.encode_unit\n"
        "def forged(result, wide):\n    result.tokens = result.probe_tokens = 0\n"
        "    return _encode(result, wide)\n"
        "protocol.encode_unit = forged\n"
        "sys.modules['__main__'].encode_unit = forged\n"
    )
    outcome = os_layer_only(hostile("return None", prelude), envs)
    assert outcome.ok and _tokens(outcome) == honest_tokens(envs)


# --- limits ---------------------------------------------------------------------------------


def test_ignoring_the_episode_alarm_hits_the_cpu_limit(envs):
    body = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
    limits = SandboxLimits(memory_mb=1024, cpu_s=4, episode_cpu_s=0.5, idle_s=30)
    result = evaluate_candidate(hostile(body), envs, [0.0, 1.0], 2, limits=limits)
    assert not result.ok and "CPU-time limit exceeded" in result.reason
    outcome = os_layer_only(hostile(body), envs, limits)
    assert not outcome.ok and "CPU-time limit exceeded" in outcome.reason


def test_sleeping_is_ended_by_the_idle_limit(envs):
    body = "sys.modules['time'].sleep(3600)"
    outcome = os_layer_only(hostile(body, prelude="import time"), envs)
    assert not outcome.ok and "stopped computing" in outcome.reason


def test_a_memory_bomb_is_contained(envs):
    outcome = os_layer_only(hostile("x = bytearray(4 << 30)\nreturn len(x)"), envs)
    answers = [r.answer for *_, r in outcome.results]
    assert outcome.ok and all(
        a == "contained: MemoryError" for a in answers if a and a.startswith("c")
    )


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "if state.question != FIRST[0]:\n    return str(hash(state.question) % 7)",
        "COUNT[0] += 1\nif COUNT[0] > 3:\n    return str(COUNT[0] % 2)",
    ],
    ids=["hash-after-the-first-question", "state-across-episodes"],
)
def test_non_determinism_anywhere_is_caught(body, envs):
    prelude = "FIRST = [None]\nCOUNT = [0]\n"
    body = "if FIRST[0] is None:\n    FIRST[0] = state.question\n" + body
    source = hostile(body, prelude).replace('"escaped: " + str(outcome)[:200]', "str(outcome)")
    outcome = run_sandboxed(source, envs, [(0.0, {}), (1.0, {})], 20, limits=LIMITS)
    assert not outcome.ok and "non-deterministic" in outcome.reason


def test_an_honest_candidate_matches_the_trusted_evaluator(envs):
    source = (Path(__file__).parents[2] / "controllers" / "baselines" / "cmc.py").read_text()
    outcome = run_sandboxed(source, envs, [(0.0, {}), (1.0, {})], 3, limits=LIMITS)
    assert outcome.ok and outcome.verified_units >= 1
    controller = load_controller("cmc")
    env = envs[ENV]
    for index, _, question, result in outcome.results:
        params = controller.params([0.0, 1.0][index])
        trusted = env.run_episode(controller, params, question, result.seed)
        assert (result.answer, result.tokens, result.opened) == (
            trusted.answer,
            trusted.tokens,
            trusted.opened,
        )


FLOOD_SCRIPT = """
import resource, sys
from autotts.replay import ReplayEnvironment
from autotts.sandbox import SandboxLimits, run_sandboxed
from autotts.store import load_environment_records
env = ReplayEnvironment("{env}", load_environment_records("{env}", {env_dir!r})[:2])
source = sys.stdin.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
limits = SandboxLimits(memory_mb=1024, cpu_s=4, idle_s=10)
outcome = run_sandboxed(source, {{"{env}": env}}, [(0.0, {{}})], 2, limits=limits,
                        static_check=False, audit_hook=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome.ok, (after - before) // 1024, outcome.reason)
"""


@pytest.mark.parametrize(
    "flood",
    [
        "chunk = b'x' * (1 << 20)\nwhile True:\n    os.write(1, chunk)",
        "os.write(1, b'P\\t[{}]\\n')\nline = b'0\\t' + b'[' * 100000 + b'\\n'\nwhile True:\n    os.write(1, line)",
        "chunk = b'e' * (1 << 20)\nwhile True:\n    os.write(2, chunk)",
    ],
    ids=["stdout-no-newline", "stdout-deep-lines", "stderr"],
)
def test_a_reply_flood_keeps_the_parent_small(flood, env_dir):
    import subprocess
    import sys

    source = TEMPLATE.format(body="    return None", prelude=flood)
    script = FLOOD_SCRIPT.format(env=ENV, env_dir=str(env_dir))
    done = subprocess.run(
        [sys.executable, "-c", script], input=source, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ok, extra_mb, reason = done.stdout.split(" ", 2)
    assert ok == "False" and int(extra_mb) < 500, done.stdout
