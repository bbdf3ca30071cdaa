"""AutoTTS-API method files run unchanged (autotts/loading/autotts_paper_api.py): the reference's own
hand-written baselines and the agent-written CMC reproduce the published cells exactly, read
from ../shared/autotts-api/ (never copied); every quirk of the reference API on hand-made
methods; loading errors name the file and the classes."""

import textwrap
from pathlib import Path

import pytest

import autotts
from autotts.loading.controller_files import ControllerLoadError, load_controller
from autotts.results.writers import reference_cells

API = Path(__file__).resolve().parents[3] / "shared" / "autotts-api" / "cmc_method.py"
# the reference's configurations (../shared/docs/reference-results.md) and their cells
REFERENCE = {
    f"{API}:ASCMethod@max_samples=64@threshold=0.95": ("asc", "n=64"),
    f"{API}:ESCMethod@max_samples=64@window_size=8": ("esc", "n=64"),
    f"{API}:Parallel_Probe@num_chains=64@T=40@prune_patience=7@warm_up=15": (
        "parallel-probe", "n=64",
    ),
    f"{API}:OptimalController@beta=0.5": ("cmc", "β=0.5"),
    f"{API}:OptimalController@beta=1.0": ("cmc", "β=1"),
}  # fmt: skip

pytestmark = pytest.mark.skipif(not API.exists(), reason=f"{API} not found (../shared)")


@pytest.mark.slow  # 5 methods x 8 stores x 100 seeds: a few minutes
def test_reference_methods_reproduce_the_published_cells_exactly(env_dir):
    cells = reference_cells()
    for spec, key in REFERENCE.items():
        report = autotts.evaluate(spec, "all", env_dir=env_dir, seeds=100, trace_seeds=0)
        assert len(report.rows) == 8
        for row in report.rows:
            assert row.status == "ok", row.status
            accuracy, tokens_k = cells[(*key, row.env_id)]
            assert round(row.accuracy, 2) == pytest.approx(accuracy, abs=0.01 + 1e-9), row
            assert round(row.tokens) / 1000 == pytest.approx(tokens_k, abs=0.1 + 1e-9), row


def test_each_episode_equals_the_native_baseline(env_dir):
    env = autotts.make("Qwen3-1.7B/aime25", env_dir)
    pairs = [
        (f"{API}:ASCMethod", {"max_samples": 64, "threshold": 0.95}, "asc", {"n": 64}),
        (f"{API}:Parallel_Probe", {"num_chains": 64, "T": 40, "prune_patience": 7,
                                   "warm_up": 15}, "parallel-probe", {"n": 64}),
        (f"{API}:OptimalController", {}, "cmc", {}),
    ]  # fmt: skip
    for spec, legacy_params, native, native_params in pairs:
        legacy, reference = load_controller(spec), load_controller(native)
        for q in range(0, 30, 3):
            for seed in range(3):
                a = env.run_episode(legacy, legacy.params(0.5, **legacy_params), q, seed)
                b = env.run_episode(reference, reference.params(0.5, **native_params), q, seed)
                assert a.error is None, a.error
                assert (a.answer, a.tokens, a.opened) == (b.answer, b.tokens, b.opened), spec


QUIRKS = """
    from abc import ABC, abstractmethod

    import numpy as np


    class LLMDesignedMethod(ABC):
        def __init__(self, config=None):
            self.config = config or {}

        @abstractmethod
        def solve(self, question): ...


    class Probing(LLMDesignedMethod):
        NAME = "probing"

        def __init__(self, mode: str = "normal", config=None):
            super().__init__(config)
            self.mode = mode

        def solve(self, question):
            seen = []
            if self.mode == "costs":
                answer, i, done = question.probe_new()
                question.probe_more(np.int64(i))  # numpy indices work as in a list
                final = question.get_new_branch_final_answer()
                return repr((question.get_cost_per_branch_active(),
                             question.get_seq_and_total_tokens(), question.probe_freq, final))
            if self.mode == "unopened":
                question.probe_new()
                question.probe_more(1)  # the next branch, never opened
            if self.mode == "negative":  # -1: the last of every branch, open once all are
                question.probe_new()
                try:
                    question.probe_more(-3)
                except IndexError:
                    question.probe_new()
                    return repr(question.probe_more(-2))
            if self.mode == "negative-unopened":
                question.probe_new()
                question.probe_more(-1)
            if self.mode == "finished":
                answer, i, done = question.probe_new()
                while not done:
                    answer, done = question.probe_more(i)
                again = question.probe_more(i)  # the last interval charged again
                read = question.get_new_branch_final_answer()
                index = len(question.get_cost_per_branch_active()) - 1
                return repr((again, question.probe_more(index), read,  # a read one: free
                             question.get_seq_and_total_tokens()))
            if self.mode == "int":
                return 7
            if self.mode == "price":
                question.probe_freq = 1  # the reference would charge 1 token per step
            while True:  # exhaust the branches: the reference raises, methods catch it
                try:
                    seen.append(question.get_new_branch_final_answer())
                except IndexError:
                    break
            try:
                question.probe_new()
            except ValueError:
                return f"{len(seen)} read, then ValueError"


    class Other(LLMDesignedMethod):
        def solve(self, question):
            return "x"
"""


@pytest.fixture
def quirks(tmp_path):
    path = tmp_path / "methods.py"
    path.write_text(textwrap.dedent(QUIRKS))
    return path


@pytest.fixture
def small(tmp_path):
    from conftest import tiny_store

    from autotts.envs.replay import ReplayEnvironment
    from autotts.envs.stores import load_records

    store = tiny_store(tmp_path / "T" / "s.json", [[["1", "2"], 1200, "7"], [["3"], 700, "7"]])
    return ReplayEnvironment("T/s", load_records(store))


def play(env, path, mode):
    method = load_controller(f"{path}:Probing")
    return env.run_episode(method, method.params(0.0, mode=mode), 0, 0)


def test_the_reference_apis_quirks(quirks, small):
    from autotts.envs.replay import branch_order

    first, second = branch_order(0, 2)
    lengths = {0: 1200, 1: 700}
    done = play(small, quirks, "normal")
    assert done.answer == "2 read, then ValueError" and done.tokens == 1900
    costs = play(small, quirks, "costs")
    # the first branch's second step: a probe of branch 0, or the end of branch 1 (one probe)
    expected_first = 1000 if first == 0 else lengths[1]
    assert costs.error is None
    assert costs.answer == repr(
        ([expected_first, lengths[second]], (0, expected_first + lengths[second]), 500, "7")
    )
    unopened = play(small, quirks, "unopened")
    assert "never opened" in unopened.error and "token cost mismatch" in unopened.error
    assert "never opened" in play(small, quirks, "negative-unopened").error
    negative = play(small, quirks, "negative")  # -2 of 2 branches: the first opened
    assert negative.error is None
    assert negative.answer == repr(("2", False) if first == 0 else ("7", True))
    finished = play(small, quirks, "finished")
    last_interval = 200  # 1200 - 2 x 500 and 700 - 500
    assert finished.error is None
    assert finished.answer == repr(
        (("7", True), ("7", True), "7", (0, lengths[first] + last_interval + lengths[second]))
    )
    assert [step[0] for step in finished.trace][-3:] == ["charge_again", "read", "note"]
    assert play(small, quirks, "int").answer.startswith("<int answer 7")  # never equals "7"
    assert (
        "probe_freq is the store's probe interval (500 tokens)"
        in play(small, quirks, "price").error
    )


def test_loading_names_the_methods(quirks, env_dir):
    with pytest.raises(ControllerLoadError, match=r"defines AutoTTS-API methods Probing, Other"):
        load_controller(str(quirks))
    with pytest.raises(ControllerLoadError, match=r"no controller or AutoTTS-API method named"):
        load_controller(f"{quirks}:Missing")
    method = load_controller(f"{quirks}:Probing")
    assert method.params(0.3) == {"mode": "normal", "beta": 0.3}
    # among several methods, the one the reference's search evaluates
    assert type(load_controller(str(API))).__name__ == "AutoTTS_OptimalController"
    assert autotts.check(f"{quirks}:Other", "Qwen3-8B/aime24", env_dir=env_dir, questions=1,
                         seeds=1).ok  # fmt: skip


def test_reference_file_runs_in_the_os_sandbox(env_dir):
    """numpy/scipy imports pass the static check and are imported before the lock-down; the
    parent's recomputed results equal the in-process run's."""
    from autotts.envs.replay import ReplayEnvironment
    from autotts.envs.stores import load_environment_records
    from autotts.sandbox import run_sandboxed

    records = load_environment_records("Qwen3-8B/aime24", env_dir)[:4]
    env = ReplayEnvironment("Qwen3-8B/aime24", records)
    outcome = run_sandboxed(
        API.read_text(), {env.env_id: env}, [(0.5, {})], 2, class_name="OptimalController"
    )
    assert outcome.ok, outcome.reason
    legacy = load_controller(f"{API}:OptimalController")
    params = legacy.params(0.5)
    for _, _, question, result in outcome.results:
        direct = env.run_episode(legacy, params, question, result.seed)
        assert (result.answer, result.tokens) == (direct.answer, direct.tokens)
    assert len(outcome.results) == 8


HELPERS_IMPORTED = """
import copy
import re
from collections import Counter

from controller_api import LLMDesignedMethod, MethodTraceRecorder
from data_loader import ModelandTask, Question


class Majority(LLMDesignedMethod):
    NAME = "majority"

    def __init__(self, config=None, n=4):
        super().__init__(config)
        self.n, self.trace = n, MethodTraceRecorder()

    def solve(self, question: Question):
        answers = []
        for _ in range(self.n):
            answers.append(re.sub(r"\\s+", "", question.get_new_branch_final_answer()))
            self.trace.add_step(seen=copy.deepcopy(answers))
        assert self.description() == "majority | config=" + repr(self.config)
        assert len(self.trace.to_list()) == self.n
        return Counter(answers).most_common(1)[0][0]


if __name__ == "__main__":  # the reference's own evaluation: not run on import
    print(ModelandTask("Qwen3-8B", "aime24").evaluate(Majority()))
"""


def test_files_importing_the_reference_helpers_run_in_process_and_sandboxed(tmp_path, env_dir):
    """`from controller_api import LLMDesignedMethod` gets autotts's stand-ins."""
    from autotts.envs.replay import ReplayEnvironment
    from autotts.envs.stores import load_environment_records
    from autotts.sandbox import run_sandboxed

    path = tmp_path / "majority.py"
    path.write_text(HELPERS_IMPORTED)
    env = ReplayEnvironment(
        "Qwen3-8B/aime24", load_environment_records("Qwen3-8B/aime24", env_dir)[:3]
    )
    method, sc = load_controller(str(path)), load_controller("sc")
    direct = [env.run_episode(method, method.params(0.5), q, s) for q in range(3) for s in range(2)]
    for result in direct:
        assert result.error is None
        assert (
            result.tokens
            == env.run_episode(sc, sc.params(0.5, n=4), result.question, result.seed).tokens
        )
    outcome = run_sandboxed(HELPERS_IMPORTED, {env.env_id: env}, [(0.5, {})], 2)
    assert outcome.ok, outcome.reason
    assert sorted((q, r.seed, r.answer, r.tokens) for _, _, q, r in outcome.results) == sorted(
        (r.question, r.seed, r.answer, r.tokens) for r in direct
    )
    import sys

    for name in ("controller_api", "data_loader"):  # the stand-ins are there only while loading
        assert name not in sys.modules
    with pytest.raises(RuntimeError, match="autotts evaluate file.py:Class"):
        autotts.loading.autotts_paper_api.ModelandTask("Qwen3-8B", "aime24")


PUBLISHED = API.with_name("reference_methods.py")  # its OptimalController is a stub with no body


def test_the_published_baselines_file_loads_past_its_unfinished_stub(env_dir):
    """The AutoTTS repository's reference_methods.py does not parse (its last class has no
    body): a selected class loads with the broken one left out, announced, in process and
    in the sandbox; the results equal the same class in cmc_method.py."""
    with pytest.warns(UserWarning, match=r"^OptimalController does not parse") as caught:
        published = load_controller(f"{PUBLISHED}:ESCMethod")
    assert (Path(caught[0].filename), caught[0].lineno) == (PUBLISHED, 983)
    with pytest.raises(ControllerLoadError, match=r"reference_methods.py:991: syntax error"):
        load_controller(f"{PUBLISHED}:OptimalController")
    env = autotts.make("Qwen3-4B/aime25", env_dir)
    same = load_controller(f"{API}:ESCMethod")
    for q, seed in [(0, 0), (7, 1), (19, 2)]:
        a = env.run_episode(published, published.params(0.5), q, seed)
        b = env.run_episode(same, same.params(0.5), q, seed)
        assert a.error is None and (a.answer, a.tokens, a.trace) == (b.answer, b.tokens, b.trace)
    sandboxed = autotts.evaluate(  # (announced once, above)
        f"{PUBLISHED}:ESCMethod", "Qwen3-4B/aime25", env_dir=env_dir, seeds=2, sandbox=True
    )
    direct = autotts.evaluate(f"{API}:ESCMethod", "Qwen3-4B/aime25", env_dir=env_dir, seeds=2)
    assert sandboxed.rows[0].status == "ok", sandboxed.rows[0].status
    assert (sandboxed.rows[0].accuracy, sandboxed.rows[0].tokens) == (
        direct.rows[0].accuracy,
        direct.rows[0].tokens,
    )


def test_only_the_definitions_that_do_not_parse_are_left_out(tmp_path):
    from autotts.loading.controller_files import MAX_LEFT_OUT, without_broken_classes

    source = textwrap.dedent("""
        import math


        @staticmethod
        def broken(:
            pass


        class Kept:
            VALUE = math.pi


        class AlsoBroken:
            def method(self):
        """)
    with pytest.warns(UserWarning) as caught:
        kept = without_broken_classes(source, "Kept", "m.py")
    assert [(w.filename, w.lineno, str(w.message).split(" (")[0]) for w in caught] == [
        ("m.py", 5, "broken does not parse"),
        ("m.py", 14, "AlsoBroken does not parse"),
    ]
    assert kept.count("\n") == source.count("\n") and "class Kept" in kept
    assert "@staticmethod" not in kept and "def broken" not in kept and "AlsoBroken" not in kept
    assert without_broken_classes(source, "AlsoBroken", "m.py") == source  # reported as is
    assert without_broken_classes("x = (\n", "Kept", "m.py") == "x = (\n"
    # a file of more broken definitions than MAX_LEFT_OUT (each costs a parse) is reported
    many = (
        "".join(f"def f{i}(:\n    pass\n" for i in range(MAX_LEFT_OUT + 1))
        + "class Kept:\n    x = 1\n"
    )
    assert without_broken_classes(many, "Kept", "many.py") == many
    fewer = "".join(many.splitlines(keepends=True)[2:])
    with pytest.warns(UserWarning):
        assert "def f" not in without_broken_classes(fewer, "Kept", "fewer.py")


CONFIGURED = """
from controller_api import LLMDesignedMethod


class Configured(LLMDesignedMethod):
    def __init__(self, config=None):
        super().__init__(config)
        self.n = int(self.config.get("n", 2))

    def solve(self, question):
        for _ in range(self.n):
            question.get_new_branch_final_answer()
        if self.config.get("label", "x") == "rng":
            return question.rng.random()
        return repr((sorted(self.config.items()), len(question._cost_per_branch)))
"""


def test_config_keys_the_method_reads_are_parameters(tmp_path, small):
    path = tmp_path / "configured.py"
    path.write_text(CONFIGURED)
    method = load_controller(str(path))
    assert method.params(0.3) == {"n": 2, "label": "x", "beta": 0.3}
    default = small.run_episode(method, method.params(0.3), 0, 0)
    assert default.answer == repr(([("beta", 0.3)], 2)) and default.opened == 2
    one = small.run_episode(method, method.params(0.3, n=1), 0, 0)
    assert one.answer == repr(([("beta", 0.3), ("n", 1)], 2)) and one.opened == 1
    rng = small.run_episode(method, method.params(0.3, label="rng"), 0, 0)
    assert "has no 'rng'" in rng.error and "probe_new()" in rng.error


SCRIPTED = """
class LLMDesignedMethod:
    def __init__(self, config=None):
        self.config = config or {}


class Scripted(LLMDesignedMethod):
    # a pseudo-random walk over every call of the API (none on a branch read whole: the
    # documented difference), logging what each returns

    def __init__(self, script=0, digest=0, config=None):
        super().__init__(config)
        self.script, self.digest = script, digest

    def solve(self, question):
        log, growing, done, x = [], [], [], self.script * 7919 + 1
        for _ in range(40):
            x = (x * 1103515245 + 12345) % 2**31
            choice = x % 6
            if choice == 0:
                try:
                    answer, i, finished = question.probe_new()
                except ValueError:
                    log.append("no new branch")
                    continue
                log.append(("new", answer, i, finished))
                (done if finished else growing).append(i)
            elif choice in (1, 2) and growing:
                i = growing[x // 8 % len(growing)]
                if x % 5 == 0 and i == question.get_cost_per_branch_active().__len__() - 1:
                    i -= len(question._cost_per_branch)  # the same branch, counted from the end
                answer, finished = question.probe_more(i)
                log.append(("more", i, answer, finished))
                if finished:
                    growing.remove(i % len(question._cost_per_branch))
                    done.append(i % len(question._cost_per_branch))
            elif choice in (1, 2) and done:  # charged again, as the reference charges it
                log.append(("again", question.probe_more(done[x // 8 % len(done)])))
            elif choice == 3:
                try:
                    log.append(("read", question.get_new_branch_final_answer()))
                except IndexError:
                    log.append("no branch to read")
            elif choice == 4:
                try:
                    question.probe_more(len(question._cost_per_branch) + 1)
                except ValueError:
                    log.append("beyond")
            else:
                log.append((question.get_cost_per_branch_active(),
                            question.get_seq_and_total_tokens(), question.probe_freq))
        return checksum(repr(log)) if self.digest else repr(log)


def checksum(text):  # (sandboxed answers have at most 1000 characters)
    return f"{len(text)}:{sum((i + 1) * ord(c) for i, c in enumerate(text)) % 10**12}"
"""


def test_every_call_agrees_with_the_reference_question(tmp_path):
    """Differential: the reference's own Question (../shared/autotts-api/data_loader.py, run
    from there) and the adapter give the same return values and the same cost for pseudo-
    random walks over the API, on branches with no probes, short tails and long tails."""
    import importlib.util
    import json

    from conftest import tiny_store

    from autotts.envs.replay import ReplayEnvironment
    from autotts.envs.stores import load_records
    from autotts.sandbox import run_sandboxed

    spec = importlib.util.spec_from_file_location(
        "reference_data_loader", API.parent / "data_loader.py"
    )
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    branches = [[["1", "2", "3"], 1600, "7"], [[], 300, "5"], [["4"], 900, "7"],
                [["7", "7"], 1000, "7"], [["2", "2", "2", "2"], 1800, "9"], [["5"], 2000, "5"]]  # fmt: skip
    store = tiny_store(tmp_path / "T" / "s.json", branches)
    info = json.loads(store.read_text())[0]
    env = ReplayEnvironment("T/s", load_records(store))
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED)
    ours = load_controller(f"{path}:Scripted")
    theirs, direct = {}, {}
    exec(compile(SCRIPTED, "scripted.py", "exec"), theirs)
    for script in range(40):
        for seed in range(3):
            method, seen = theirs["Scripted"](script), []
            _, cost = reference.Question(info, seed=seed).solve(
                lambda q, method=method, seen=seen: seen.append(method.solve(q)) or seen[-1]
            )
            result = env.run_episode(ours, ours.params(0.0, script=script), 0, seed)
            assert result.error is None, result.error
            assert (result.answer, result.tokens) == (seen[0], cost), (script, seed)
            direct[script, seed] = (result.answer, result.tokens)
    # in the sandbox, the parent recomputes every cost (charges again included) from the log
    configs = [(0.0, {"script": script, "digest": 1}) for script in range(0, 40, 4)]
    outcome = run_sandboxed(SCRIPTED, {env.env_id: env}, configs, 3, class_name="Scripted")
    assert outcome.ok, outcome.reason
    assert len(outcome.results) == 30
    for index, _, _, result in outcome.results:
        answer, tokens = direct[4 * index, result.seed]
        assert (result.answer, result.tokens) == (theirs["checksum"](answer), tokens)


def test_a_method_is_called_as_the_reference_calls_it(tmp_path, small):
    """``Question.solve`` calls ``method(question)``: a ``__call__`` of the method's own runs."""
    path = tmp_path / "called.py"
    path.write_text(
        textwrap.dedent("""
            from controller_api import LLMDesignedMethod

            class Called(LLMDesignedMethod):
                def __call__(self, question):
                    return "called:" + self.solve(question)

                def solve(self, question):
                    return question.get_new_branch_final_answer()
            """)
    )
    method = load_controller(str(path))
    assert small.run_episode(method, method.params(1.0), 0, 0).answer == "called:7"


def test_a_named_class_with_solve_runs_whatever_its_base(tmp_path, small):
    path = tmp_path / "solo.py"
    path.write_text("class Solo:\n    def solve(self, question):\n        return 'x'\n")
    solo = load_controller(f"{path}:Solo")
    assert small.run_episode(solo, solo.params(1.0), 0, 0).answer == "x"
    with pytest.raises(ControllerLoadError, match="defines no Controller subclasses"):
        load_controller(str(path))  # unnamed, only LLMDesignedMethod subclasses are methods
