import json
import os
from pathlib import Path

import pytest

from autotts import Answer, Controller

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENVS = (ROOT / ".." / "shared" / "environments").resolve()
FIXTURE_CONTROLLERS = Path(__file__).parent / "fixtures" / "controllers"


@pytest.fixture(scope="session")
def env_dir() -> Path:
    """The shipped replay stores (CI always has ../shared beside the checkout)."""
    if not (SHARED_ENVS / "Qwen3-8B" / "aime24.json").is_file():
        pytest.fail(f"shipped replay stores not found at {SHARED_ENVS}; set up ../shared first")
    return SHARED_ENVS


class Scripted(Controller):
    """Yields a fixed list of actions, remembers what each yield returned and the state."""

    name = "scripted"

    def __init__(self, actions, answer="7"):
        self.actions, self.answer, self.replies, self.state = actions, answer, [], None

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state):
        self.state = state
        for action in self.actions:
            self.replies.append((yield action))
        return Answer(self.answer, "scripted")


def fixture_controller(name: str) -> str:
    return str(FIXTURE_CONTROLLERS / f"{name}.py")


def tiny_store(path: Path, branches, gold="7", delta=500, question="What is 3+4?") -> Path:
    """Write a one-question replay store with the given [probes, tokens, final] branches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "question": question,
        "gold_answer": gold,
        "probe_freq": delta,
        "each_branch": branches,
        "final_answers_trace": [b[2] for b in branches],
    }
    path.write_text(json.dumps([record]))
    return path


def signal_store(path, branches, signals, gold="A", delta=500, seed=None, questions=1):
    """A store whose branches (``[probes, tokens, final]``) and per-interval ``signals``
    (name -> one list per branch) are given in *opening order of ``seed``* (store order when
    ``seed`` is None)."""
    from autotts.envs.replay import branch_order

    n = len(branches)
    slot = list(range(n)) if seed is None else list(branch_order(seed, n))
    stored, named = [None] * n, {k: [None] * n for k in signals}
    for j, position in enumerate(slot):
        stored[position] = branches[j]
        for k, values in signals.items():
            named[k][position] = values[j]
    record = {
        "question": "q",
        "gold_answer": gold,
        "probe_freq": delta,
        "each_branch": stored,
        "signals": named,
    }
    records = [{**record, "question": f"q{i}"} for i in range(questions)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory):
    """Six hand-made branches of one question (probes charged 3 tokens each): small enough
    for property tests to explore every edge (no probes, short and long branches)."""
    from autotts.envs.replay import ReplayEnvironment
    from autotts.envs.stores import load_records

    path = tiny_store(
        tmp_path_factory.mktemp("toy") / "Toy" / "t.json",
        [
            [["1", "2", "3"], 1700, "3"],
            [["5", "5"], 900, "5"],
            [["7"], 800, "7"],
            [[], 300, "9"],
            [["1", "1", "1", "1"], 2600, "1"],
            [["2"], 450, "2"],
        ],
        gold="3",
    )
    return ReplayEnvironment("Toy/t", load_records(path), probe_cost=3)


# a discovery run small enough for a test: one search and one held-out environment, 2 seeds
SMALL_DISCOVERY = [
    "--search-env",
    "Qwen3-8B/aime24",
    "--heldout-env",
    "Qwen3-8B/aime25",
    "--seeds",
    "2",
    "--final-seeds",
    "2",
    "--window-trials",
    "3",
    "--race-seeds",
    "3",
]


# --- live backend (tests/live): a tiny model built here, one real vLLM engine per session.
# Those tests start real vLLM engines on CPU (tens of seconds each) and are marked ``live``,
# so a quick local run can skip them (-m 'not live'); CI runs them.

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
MAX_MODEL_LEN = 1024


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    pytest.importorskip(
        "vllm",
        reason="the live tests need vLLM: pip install --no-deps -r requirements/cpu.txt "
        "(or '.[dev,live]' on GPUs)",
    )
    from autotts.live.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def vllm_backend(tiny_model, tmp_path_factory):
    from autotts.live.backend import VLLMBackend

    backend = VLLMBackend(str(tiny_model), max_model_len=MAX_MODEL_LEN, enforce_eager=True, seed=0)
    yield backend
    backend.close()


@pytest.fixture
def settings():
    from autotts.live.settings import LiveSettings

    # greedy: the tiny model then never emits EOS, so branches end at the token limit
    return LiveSettings(delta=32, max_branch_tokens=160, probe_tokens=6, temperature=0.0)


def kill_mid_run_and_resume(command, out, n_questions) -> list:
    """Start a ``build-env`` (or ``envs probe``) command, SIGKILL it (engine and workers) once a first question is
    written, rerun it to the end; returns the store's records, after checking that the store
    is complete and nothing written before the kill was lost or redone."""
    import signal
    import subprocess
    import time

    partial = out.with_name(out.stem + ".partial")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    first = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(partial.glob("q*.json")):
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no question written in 300 s"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # the engine and its workers, mid-run
    first.wait()
    kept = {p.name: p.read_bytes() for p in partial.glob("q*.json")}
    assert kept and not out.exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    records = json.loads(out.read_text())
    assert len(records) == n_questions and not partial.exists()
    for name, raw in kept.items():  # nothing written before the kill was lost or redone
        written = {k: v for k, v in json.loads(raw).items() if not k.startswith("_")}
        assert written == records[int(name[1:6])]  # (_bookkeeping goes to the meta)
    return records
