"""Hostile candidates, one class of attack per test.

Each candidate runs twice: through :func:`evaluate_candidate` (the path the LLM proposer
uses, every layer on), and through :func:`run_sandboxed` with both Python-level layers
(static check, audit hook) switched off, so that the operating-system layer alone has to
contain it. Either way: nothing outside the private temp dir changes, no process outlives the
evaluation, and an accepted candidate's tokens are the parent's own recomputation.
"""

from __future__ import annotations

import http.server
import platform
import sys
import threading
from pathlib import Path

import pytest

from autotts.discovery.candidates import evaluate_candidate
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import load_environment_records
from autotts.loading.controller_files import load_controller
from autotts.sandbox import SandboxLimits, isolation_problems, run_sandboxed

pytestmark = pytest.mark.skipif(
    bool(isolation_problems()), reason=f"no OS isolation here: {isolation_problems()}"
)

ENV = "Qwen3-8B/aime24"
LIMITS = SandboxLimits(memory_mb=1024, cpu_s=20, step_cpu_s=2.0, idle_s=3)

TEMPLATE = """
import dataclasses
import operator
from autotts import Branch, Continue, Controller

sys = operator.attrgetter("sys")(dataclasses)  # reachable without an import or a dunder
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
    """No worker this interpreter started (they run ``sys.executable``; another checkout's
    test run beside this one uses its own) is left running after a test."""
    yield
    ours = f"{sys.executable}\0".encode()
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(ours) and b"autotts.sandbox.worker" in cmdline:
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
    """The worker does not even load the replay engine; what engine code it has, it may patch."""
    prelude = (
        "replay = sys.modules.get('autotts.envs.replay')\n"
        "if replay is not None:\n"
        "    replay._Episode._charge = lambda self, tokens, probe_tokens=0: None\n"
        "engine = sys.modules['autotts.core.engine']\n"
        "engine.finish_result = engine.perform = lambda *args, **kwargs: None\n"
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

# A forging module writes frames itself (4-byte big-endian length, then the payload) and exits
# before its class runs. 8 episodes are in flight in the first round (2 configurations × 2
# seeds × 2 questions).
FRAME = "def fr(data):\n    os.write(1, len(data).to_bytes(4, 'big') + data)\n"
HEADER = FRAME + 'fr(b"P[{}, {}]")\n'
ANSWER = 'b"=" + (1).to_bytes(4, "little") + b"7" + (0).to_bytes(4, "little")'
FORGERIES = {
    "nan-in-the-header": FRAME + 'fr(b"P[{}, {\\"n\\": NaN}]")',
    "huge-int-in-the-header": FRAME + 'fr(b"P[{}, {\\"n\\": ' + "9" * 40 + '}]")',
    "a-frame-over-the-limit": HEADER + 'os.write(1, (1 << 30).to_bytes(4, "big"))',
    "fewer-entries-than-episodes": HEADER + f"fr({ANSWER} * 7)",
    "more-entries-than-episodes": HEADER + f"fr({ANSWER} * 9)",
    "unknown-entry": HEADER + f'fr({ANSWER} * 7 + b"z")',
    "probe-flag-not-a-bool": HEADER + f'fr({ANSWER} * 7 + b"c\\x02" + bytes(8) + bytes(4))',
    "answer-not-utf8": HEADER + 'fr(b"=" + (1).to_bytes(4, "little") + b"\\xff" + bytes(4) * 8)',
    "answer-too-long": HEADER + 'fr(b"=" + (4001).to_bytes(4, "little") + b"7" * 4001 + bytes(4))',
    "a-frame-before-the-answer": HEADER + f"fr({ANSWER} * 8)\nfr({ANSWER} * 8)",
    "truncated-frame": HEADER + 'os.write(1, (100).to_bytes(4, "big") + b"=")',
    "pickle-payload": 'os.write(1, b"\\x80\\x05\\x95junk\\n")',
    "too-many-ids": HEADER
    + f'fr(b"p" + (5000).to_bytes(4, "little") + bytes(40000) + {ANSWER} * 7)',
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_replies_are_rejected_without_crashing(forgery, envs):
    body = FORGERIES[forgery] + "\nos._exit(0)"
    source = TEMPLATE.format(body="    return None", prelude=body)
    outcome = os_layer_only(source, envs)
    assert not outcome.ok
    assert "malformed reply" in outcome.reason, outcome.reason


def test_costs_are_the_parents_whatever_the_worker_does(envs):
    """The worker cannot report a cost at all: it sends actions, and the parent plays them.
    A worker whose own bookkeeping is sabotaged (its mirror never updated, its encoder
    replaced) still pays, episode by episode, exactly what its actions cost on a fresh
    trusted engine."""
    prelude = (
        "remote = sys.modules['autotts.sandbox.remote']\n"
        "_encode = remote.encode_action\n"
        "remote.encode_action = lambda action: _encode(action)\n"
        "remote.apply_observation = lambda state, *a: [0]\n"
    )
    outcome = os_layer_only(hostile("return None", prelude), envs)
    assert outcome.ok
    traced = [r for *_, r in outcome.results if r.actions is not None]
    assert traced and all(r.tokens > 0 for *_, r in outcome.results)
    for result in traced:
        fresh = result.source[0](*result.source[1:])
        for event, ids, arg, probe, _ in result.actions:
            if event == "branch":
                fresh.extend(tuple(fresh.open(len(ids), arg)), 1, probe)
            else:
                fresh.extend(ids, arg, probe)
        assert fresh.tokens == result.tokens


# --- limits ---------------------------------------------------------------------------------


def test_an_endless_loop_hits_a_cpu_limit(envs):
    body = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
    limits = SandboxLimits(memory_mb=1024, cpu_s=4, step_cpu_s=0.5, idle_s=30)
    result = evaluate_candidate(hostile(body), envs, [0.0, 1.0], 2, limits=limits)
    assert not result.ok and "CPU-time limit exceeded" in result.reason
    outcome = os_layer_only(hostile(body), envs, limits)
    assert not outcome.ok and "CPU-time limit exceeded" in outcome.reason


CLOCKS_AND_RANDOMNESS = {
    # the kernel's clock page, read with no system call: the wall clock's seconds on x86-64
    # kernels of this decade, readable in any process (unmapped here: the read kills the worker)
    "clock-page": "libc = sys.modules['ctypes'].CDLL(None)\n"
    "libc.getauxval.restype = sys.modules['ctypes'].c_ulong\n"
    "base = libc.getauxval(33)\n"
    "return sys.modules['ctypes'].c_uint64.from_address(base - 0x6000 + 40).value",
    # machine code of its own (rdrand): no executable memory can be mapped
    "executable-memory": "import mmap\nreturn mmap.mmap(-1, 4096, prot=mmap.PROT_EXEC)",
    "wall-clock": "return sys.modules['time'].time()",
    # a new pipe's timestamps are the wall clock; an inherited one's, when it was last written
    "pipe-timestamps": "r, w = os.pipe()\nreturn os.fstat(r).st_mtime_ns",
    "stdin-timestamps": "return os.fstat(0).st_mtime_ns",
    "file-timestamps": "return os.stat(sys.modules['autotts'].__file__).st_mtime_ns",
    # names and numbers that differ between runs: the private temp dir, a pipe's inode, a
    # descriptor number of the parent's
    "working-directory": "return os.getcwd()",
    "pipe-inode": "return os.readlink('/proc/self/fd/0')",
    # (the pid pipe's number: the parent's, unless moved to a fixed one; argv or a frame)
    "descriptor-number": "f = sys._getframe()\n"
    "while f is not None:\n"
    "    if f.f_locals.get('pid_fd') not in (None, 3):\n"
    "        return f.f_locals['pid_fd']\n"
    "    f = f.f_back\n"
    "numbers = [a for a in sys.argv + sys.orig_argv if a.isdigit() and a != '3']\n"
    "if numbers:\n    return numbers\nraise OSError('none')",
    # how fast the parent drains a pipe: a non-blocking pipe, a write that does not wait
    "pipe-drain-speed": "fcntl = sys.modules['fcntl']\n"
    "return fcntl.fcntl(2, fcntl.F_SETFL, os.O_NONBLOCK)",
    "write-without-waiting": "return os.pwritev(2, [b'x'], -1, os.RWF_NOWAIT)",
    # a System V queue is stamped with the time it was made
    "ipc-timestamps": "libc = sys.modules['ctypes'].CDLL(None, use_errno=True)\n"
    "queue = libc.msgget(0, 0o1600)\n"
    "if queue < 0:\n    raise OSError('refused')\nreturn queue",
    "random-device": "return os.urandom(8)",
    # the CPU it runs on, which glibc reads from the rseq area the kernel writes (no system
    # call): the worker registers none, so glibc's getcpu falls back to the refused call
    "cpu-number": "cpu = sys.modules['ctypes'].CDLL(None).sched_getcpu()\n"
    "if cpu == -1:\n    raise OSError('no CPU number')\nreturn cpu",
}


@pytest.mark.parametrize("what", sorted(CLOCKS_AND_RANDOMNESS))
def test_no_clock_and_no_randomness_can_be_read(what, envs):
    """What would make two evaluations differ is not there: a read of the clock page kills
    the worker, the other attempts fail in the candidate, and no answer depends on them."""
    outcome = os_layer_only(hostile(CLOCKS_AND_RANDOMNESS[what], prelude="import time"), envs)
    if what == "clock-page":
        assert not outcome.ok and "SIGSEGV" in outcome.reason, outcome.reason
    else:
        assert outcome.ok and all(r.answer.startswith("contained") for *_, r in outcome.results)


# x86-64 system calls no list of refusals named before the filter became an allowlist (each
# harmless-looking, some a measure of the machine), and two numbers no kernel has yet
UNLISTED = (
    "ctypes = sys.modules['ctypes']\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "buf = ctypes.create_string_buffer(4096)\n"
    "calls = {204: (0, 128, buf), 157: (16, buf), 217: (0, buf, 4096), 140: (0, 0),\n"
    "         145: (0,), 324: (0, 0, 0), 451: (0, 0, 0, 0), 158: (0x1011, 0), 470: (), 499: ()}\n"
    "through = [n for n, args in calls.items()\n"
    "           if libc.syscall(n, *args) != -1 or ctypes.get_errno() != 1]\n"
    "if through:\n    return through\n"
    "raise OSError('every call refused')"
)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 system call numbers")
def test_system_calls_nobody_listed_are_refused(envs):
    """The seccomp filter is an allowlist: sched_getaffinity, prctl, getdents64, getpriority,
    sched_getscheduler, membarrier, cachestat, arch_prctl and numbers no kernel assigns yet
    all fail with EPERM in the candidate."""
    outcome = os_layer_only(hostile(UNLISTED), envs)
    assert outcome.ok, outcome.reason
    assert all(r.answer == "contained: OSError" for *_, r in outcome.results), [
        r.answer for *_, r in outcome.results
    ]


# futex: FUTEX_WAKE on a page of libc's code (a key shared with every process on the machine
# that maps libc), FUTEX_WAKE_PRIVATE on its own word, and a private wait against the wall
# clock (FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME) with a deadline long past
FUTEXES = (
    "ctypes = sys.modules['ctypes']\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = ctypes.c_long\n"
    "word, never = ctypes.c_int(0), (ctypes.c_long * 2)(0, 0)\n"
    "page = ctypes.cast(libc.sched_getcpu, ctypes.c_void_p).value & ~3\n"
    "shared = libc.syscall(202, ctypes.c_void_p(page), 1, 1, None), ctypes.get_errno()\n"
    "private = libc.syscall(202, ctypes.byref(word), 0x81, 1, None)\n"
    "dated = libc.syscall(202, ctypes.byref(word), 0x189, 0, never, None, -1), ctypes.get_errno()\n"
    "if shared == (-1, 1) and private == 0 and dated == (-1, 1):\n"
    "    raise OSError('shared and dated futexes refused')\n"
    "return shared, private, dated"
)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 system call numbers")
def test_futexes_stay_private_and_off_the_wall_clock(envs):
    """A futex reaches only the worker's own memory (a shared one on a page of a mapped file
    wakes processes outside the sandbox) and never waits against the wall clock (whether the
    wait returned at once would depend on the date); a private wake works (locks do)."""
    outcome = os_layer_only(hostile(FUTEXES), envs)
    assert outcome.ok, outcome.reason
    assert all(r.answer == "contained: OSError" for *_, r in outcome.results), [
        r.answer for *_, r in outcome.results
    ]


def test_an_action_naming_too_many_branches_is_refused(envs):
    source = hostile("return None").replace(
        "        while state.active():\n            yield Continue(state.active())",
        "        yield Continue(ids * 5000)",
    )
    outcome = os_layer_only(source, envs)
    assert outcome.ok and all("at most 4096 branch ids" in r.error for *_, r in outcome.results)


def test_sleeping_is_refused(envs):
    body = "sys.modules['time'].sleep(3600)"
    outcome = os_layer_only(hostile(body, prelude="import time"), envs)
    assert outcome.ok
    assert all(r.answer == "contained: PermissionError" for *_, r in outcome.results)


@pytest.mark.parametrize(
    "body",
    [
        "os.read(0, 1)",
        "lock = sys.modules['_thread'].allocate_lock()\nlock.acquire()\nlock.acquire()",
        "lock = sys.modules['_thread'].allocate_lock()\nlock.acquire()\n"
        "lock.acquire(timeout=10**6)",
        # half a frame sent, then waiting for an answer to it: the parent owes it nothing
        "os.write(1, b'\\x00\\x00\\x00\\x05P')\nos.read(0, 1)",
    ],
    ids=["reading-the-parent-pipe", "a-lock-held-twice", "a-timed-wait",
         "half-a-frame-then-reading"],
)  # fmt: skip
def test_blocking_is_ended_by_the_idle_limit(body, envs):
    outcome = os_layer_only(hostile(body), envs)
    assert not outcome.ok and "stopped computing" in outcome.reason


HOLD_WHILE_OWED = """
frame = b"n" + (3).to_bytes(4, "little") + b"abc"
data = (len(frame).to_bytes(4, "big") + frame) * 5000  # answers overflow the worker's stdin
while data:
    data = data[os.write(1, data):]
r, w = os.pipe()
os.dup2(r, 0)  # a pipe nobody writes, where the parent's was
os.read(0, 1)
"""


def test_a_worker_owed_answers_but_reading_elsewhere_is_idle(envs):
    """Forged rounds leave the parent owing answers, then the worker blocks reading another
    pipe moved onto its stdin (seccomp refuses both calls; here without OS isolation, so that
    the parent's own accounting must see it): idle, not waiting on the parent, so it ends at
    the idle allowance instead of the wall-time backstop."""
    limits = SandboxLimits(memory_mb=1024, cpu_s=5, step_cpu_s=2.0, idle_s=3)
    outcome = run_sandboxed(
        hostile(HOLD_WHILE_OWED), envs, [(0.5, {})], 1, limits=limits, isolate=False,
        static_check=False, audit_hook=False,
    )  # fmt: skip
    assert not outcome.ok and outcome.seconds < 40, (outcome.reason, outcome.seconds)


def test_idle_time_adds_up(envs):
    """Waits each shorter than the idle allowance, with computing in between, still end the
    worker once they add up to it (the worker has no clock: a timed lock wait ends at an
    absolute monotonic deadline, which this test computes for it)."""
    import time

    start = time.monotonic() + 5  # past the worker's start-up
    body = (
        "lock = sys.modules['_thread'].allocate_lock()\nlock.acquire()\n"
        f"for k in range(1, 30):\n    lock.acquire(timeout={start} + 1.0 * k)\n"
        "    sum(range(10**5))"
    )
    outcome = os_layer_only(hostile(body), envs)
    assert not outcome.ok and "stopped computing for 3 s in all" in outcome.reason


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
from autotts.envs.replay import ReplayEnvironment
from autotts.sandbox import SandboxLimits, run_sandboxed
from autotts.envs.stores import load_environment_records
env = ReplayEnvironment("{env}", load_environment_records("{env}", {env_dir!r})[:2])
source = sys.stdin.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
limits = SandboxLimits(memory_mb=1024, cpu_s=4, idle_s=10)
outcome = run_sandboxed(source, {{"{env}": env}}, [(0.0, {{}})], 2, limits=limits,
                        static_check=False, audit_hook=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome.ok, (after - before) // 1024, outcome.reason)
"""


STEP_FLOOD = """
import resource, sys
from autotts.envs.replay import ReplayEnvironment
from autotts.sandbox import SandboxLimits, run_sandboxed
from autotts.envs.stores import load_environment_records
env = ReplayEnvironment("{env}", load_environment_records("{env}", {env_dir!r})[:2])
source = sys.stdin.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = run_sandboxed(source, {{"{env}": env}}, [(b / 10, {{}}) for b in range(11)], 3,
                        trace_seeds=3, max_steps=20_000, static_check=False, audit_hook=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
longest = max(len(r.actions) for *_, r in outcome.results)
print(outcome.ok, (after - before) // 1024, longest, outcome.reason)
"""


@pytest.mark.parametrize(
    ("steps", "flood"),
    [(19_990, "yield Probe(ids)"), (3_000, "yield Note('\\U0001F600' * 1000)"),
     (19_990, "yield Probe(ids * 1000)")],
    ids=["probes", "long-notes", "many-ids"],
)  # fmt: skip
def test_a_step_flood_keeps_the_parent_small(steps, flood, env_dir):
    """Thousands of actions in every traced episode (66 of them), some with long texts or
    many ids: the traces are cut by what they weigh, so the parent stays far below 512 MB
    more than it started with (800 MB of notes were kept before they were weighed)."""
    import subprocess
    import sys

    source = hostile("return None").replace(
        "        while state.active():\n            yield Continue(state.active())",
        f"        for _ in range({steps}):\n            {flood}",
    ).replace("from autotts import Branch, Continue, Controller",
              "from autotts import Branch, Continue, Controller, Note, Probe")  # fmt: skip
    script = STEP_FLOOD.format(env=ENV, env_dir=str(env_dir))
    done = subprocess.run(
        [sys.executable, "-c", script], input=source, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ok, extra_mb, longest, reason = done.stdout.split(" ", 3)
    assert ok == "True", reason
    assert int(extra_mb) < 512 and int(longest) <= 5_001, done.stdout


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
