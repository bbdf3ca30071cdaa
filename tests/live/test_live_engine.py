"""The live environment against a real vLLM engine (tiny model, CPU)."""

import pytest

from autotts import Answer, Branch, Continue, Controller, Probe, Prune, Read
from autotts.live.live_environment import LiveEnvironment, LiveQuestion
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import load_controller

pytestmark = pytest.mark.live

QUESTIONS = [LiveQuestion("What is 2 + 2?", "4"), LiveQuestion("Compute 6 * 7.", "42")]


class Scripted(Controller):
    """Yields fixed actions and snapshots the state after each one."""

    name = "scripted"

    def __init__(self, actions):
        self.actions, self.snapshots = actions, []

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state):
        for action in self.actions:
            yield action
            self.snapshots.append(
                (list(state.depth), list(state.answer), state.tokens, state.probe_tokens)
            )
        return Answer("4", "scripted")


def test_branch_continue_probe_prune_against_the_engine(vllm_backend, settings):
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, max_branches=8)
    before = vllm_backend.stats.generated_tokens
    script = Scripted(
        [Branch(3), Continue([0, 1, 2]), Probe([0]), Prune([1]), Continue([0, 2], steps=[2, 1])]
    )
    result = env.run_episode(script, {}, 0, 0)
    assert result.error is None and result.answer == "4"
    branch, cont, probed, pruned, last = script.snapshots
    assert branch[0] == [1, 1, 1] and cont[0] == [2, 2, 2]
    # a probe reveals an answer without advancing the branch, and costs only probe tokens
    assert probed[0] == cont[0] and probed[2] == cont[2] + (probed[3] - cont[3])
    assert probed[3] - cont[3] == settings.probe_tokens
    # the pruned branch stops consuming tokens: only 0 (2 intervals) and 2 (1) grew
    assert last[0] == [4, 2, 3]
    generated = last[2] - last[3]
    assert generated == settings.delta * (3 + 3 + 3)  # 3 + 3 intervals, then 2 + 1
    # token counts match the engine's own
    assert result.tokens == vllm_backend.stats.generated_tokens - before
    assert result.probe_tokens == last[3]
    assert [step[0] for step in result.trace] == [
        "branch",
        "continue",
        "probe",
        "prune",
        "continue",
    ]


def test_never_ending_branches_finish_at_the_token_limit(vllm_backend, settings):
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, max_branches=4)
    script = Scripted([Branch(2), Continue([0, 1], steps=50), Read(1)])
    result = env.run_episode(script, {}, 1, 3)
    assert result.error is None
    depth, answers, tokens, probe_tokens = script.snapshots[-1]
    # 160-token limit: 5 intervals, then finished (depth counts the finishing step)
    assert depth == [6, 6, 6]
    assert tokens - probe_tokens == 3 * settings.max_branch_tokens
    assert all(isinstance(a, str) and a for a in answers)  # "ERR" when nothing parses


def test_continuing_a_branch_hits_the_prefix_cache(vllm_backend):
    settings = LiveSettings(delta=160, max_branch_tokens=480, probe_tokens=4, temperature=0.0)
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, max_branches=2)
    cached = vllm_backend.stats.cached_prompt_tokens
    result = env.run_episode(Scripted([Branch(1, probe=False), Continue([0])]), {}, 0, 5)
    assert result.error is None
    assert vllm_backend.stats.cached_prompt_tokens > cached


def test_a_controller_runs_live_unchanged_and_repeats(vllm_backend):
    settings = LiveSettings(delta=32, max_branch_tokens=128, probe_tokens=6)  # sampled
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, max_branches=8)
    cmc = load_controller("cmc")
    first = env.run_episode(cmc, cmc.params(0.3), 1, 7)
    again = env.run_episode(cmc, cmc.params(0.3), 1, 7)
    assert first.error is None and isinstance(first.answer, str)
    assert first.trace[0][0] == "branch" and first.tokens > 0
    assert (first.answer, first.tokens, first.trace) == (again.answer, again.tokens, again.trace)


def test_controller_errors_are_reported_like_replay(vllm_backend, settings):
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, max_branches=2)
    result = env.run_episode(Scripted([Branch(3)]), {}, 0, 0)
    assert "cannot open 3 more branches" in result.error
    result = env.run_episode(Scripted([Branch(1), Prune([0]), Continue([0])]), {}, 0, 0)
    assert "branch 0 is pruned" in result.error


def test_a_graph_with_live_roles_runs_on_the_engine(vllm_backend, settings):
    from autotts.collab import CollabGraph, GraphController

    graph = CollabGraph.from_data(
        {
            "name": "draft-then-refine",
            "nodes": [
                {"id": "draft", "role": "generate", "model": "Qwen3-8B", "controller": "sc",
                 "beta": 0.0, "width": 2},
                {"id": "check", "role": "verify", "model": "Qwen3-8B", "max_tokens": 8},
                {"id": "better", "role": "refine", "model": "Qwen3-8B", "max_tokens": 24},
            ],
            "edges": [["draft", "check"], ["check", "better"]],
        }
    )  # fmt: skip
    controller = GraphController(graph)
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, aliases=["Qwen3-8B"])
    before = vllm_backend.stats.generated_tokens
    result = env.run_episode(controller, controller.params(1.0), 0, 0)
    assert result.error is None, result.error
    generated = [step for step in result.trace if step[0] == "generate"]
    assert 2 <= len(generated) <= 3  # verify: one question per candidate; refine: one
    assert all(isinstance(step[2][0], str) for step in generated)
    assert result.tokens == vllm_backend.stats.generated_tokens - before
    assert result.tokens > 2 * settings.max_branch_tokens  # the two drafts, then the questions
    unknown = LiveEnvironment(vllm_backend, QUESTIONS, settings)
    failed = unknown.run_episode(controller, controller.params(1.0), 0, 0)
    assert "model 'Qwen3-8B' is not available" in failed.error and "as an alias" in failed.error
    from autotts.live.validation import validate_live

    report = validate_live(
        vllm_backend, QUESTIONS, controller, controller.params(1.0), settings, aliases=["Qwen3-8B"]
    )
    assert report["live"]["errors"] == 0 and report["live"]["episodes"] == 2
    assert report["replay"] is None  # no replay store holds these questions
    assert any(step["action"] == "generate" for step in report["traces"][0]["steps"])


def test_confidence_signals_follow_depth_and_match_the_engine(vllm_backend, settings):
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, max_branches=8)
    assert env.signal_names == {"confidence", "logprob"}
    seen = []

    class Watch(Scripted):
        def run(self, state):
            for action in self.actions:
                yield action
                seen.append(
                    (list(state.depth), [list(v) for v in state.signals["confidence"]],
                     [list(v) for v in state.signals["logprob"]])
                )  # fmt: skip
            return "4"

    script = Watch([Branch(2, probe=False), Continue([0, 1], steps=2), Prune([1]), Read(1)])
    assert env.run_episode(script, {}, 0, 0).error is None
    for depth, confidence, logprob in seen:  # one value per generated interval, never ahead
        assert [len(v) for v in confidence] == [len(v) for v in logprob] == depth
    final_depth, confidence, logprob = seen[-1]
    assert confidence[1] == seen[1][1][1]  # pruned: frozen
    values = [v for branch in confidence for v in branch if v is not None]
    assert values and all(v > 0 for v in values)  # minus mean top-20 log-probabilities
    assert all(v <= 0 for branch in logprob for v in branch if v is not None)
    # the engine's own per-token values, summarised per interval, give the same numbers
    from autotts.core.signals import interval_means
    from autotts.live.backend import GenerationRequest

    prompt = env.prompt(0)
    (g,) = vllm_backend.generate(
        [GenerationRequest(prompt, settings.delta, {"temperature": 0.0}, 0, settings.logprobs)]
    )
    assert len(g.confidences) == len(g.logprobs) == g.n_tokens == settings.delta
    assert interval_means(g.confidences, settings.delta, 1) == pytest.approx(
        [confidence[0][0]], rel=1e-5
    )  # greedy: branch 0's first interval is this generation


def test_no_logprobs_no_signals(vllm_backend, settings):
    quiet = settings.model_copy(update={"logprobs": 0})
    env = LiveEnvironment(vllm_backend, QUESTIONS, quiet, max_branches=8)
    assert env.signal_names == frozenset()
    deepconf = load_controller("deepconf")
    result = env.run_episode(deepconf, deepconf.params(0.0), 0, 0)
    assert "needs per-interval confidence" in result.error


AGAIN = """
from controller_api import LLMDesignedMethod


class Again(LLMDesignedMethod):
    def solve(self, question):
        answer, i, finished = question.probe_new()
        while not finished:
            answer, finished = question.probe_more(i)
        spent = question.get_seq_and_total_tokens()[1]
        assert question.probe_more(i) == (answer, True)  # charged again on replay only
        assert question.get_seq_and_total_tokens()[1] == spent
        return answer
"""


def test_autotts_api_methods_run_live(vllm_backend, settings, tmp_path):
    from pathlib import Path

    api = Path(__file__).resolve().parents[3] / "shared" / "autotts-api" / "cmc_method.py"
    if not api.exists():
        pytest.skip(f"{api} not found (../shared)")
    env = LiveEnvironment(vllm_backend, QUESTIONS, settings, max_branches=8)
    runs = {
        "ASCMethod": {"max_samples": 3},
        "Parallel_Probe": {"num_chains": 3, "T": 2, "warm_up": 1, "max_steps": 3},
    }
    for name, params in runs.items():
        method = load_controller(f"{api}:{name}")
        result = env.run_episode(method, method.params(0.0, **params), 0, 0)
        assert result.error is None and result.tokens > 0 and 1 <= result.opened <= 3, name
        # one engine call per legacy API call: the method waits for each answer
        assert all(len(step[1]) == 1 for step in result.trace if step[0] != "note"), name
    (tmp_path / "again.py").write_text(AGAIN)
    again = load_controller(str(tmp_path / "again.py"))
    result = env.run_episode(again, again.params(0.0), 0, 0)
    assert result.error is None and result.trace[-1][0] == "charge_again"


def test_legacy_methods_batch_across_episodes_in_flight(vllm_backend, settings):
    """A legacy method asks one branch at a time; four episodes in flight share each engine
    batch and get exactly the results they get one at a time."""
    from pathlib import Path

    from autotts.live.validation import validate_live

    api = Path(__file__).resolve().parents[3] / "shared" / "autotts-api" / "cmc_method.py"
    if not api.exists():
        pytest.skip(f"{api} not found (../shared)")
    method = load_controller(f"{api}:Parallel_Probe")
    params = method.params(0.0, num_chains=3, T=2, warm_up=1, max_steps=3)
    questions = QUESTIONS * 2

    def run(in_flight):
        before = (vllm_backend.stats.calls, len(vllm_backend.stats.batch_sizes))
        report = validate_live(vllm_backend, questions, method, params, settings, seeds=2,
                               max_branches=8, episodes_in_flight=in_flight)  # fmt: skip
        calls = vllm_backend.stats.calls - before[0]
        batches = vllm_backend.stats.batch_sizes[before[1] :]
        episodes = [(t["question"], t["seed"], t["answer"], t["tokens"]) for t in report["traces"]]
        return episodes, calls, sum(batches) / len(batches), report

    alone, calls_alone, mean_alone, _ = run(1)
    together, calls_together, mean_together, report = run(4)
    assert together == alone and report["live"]["errors"] == 0
    assert calls_together * 2 < calls_alone and mean_together > 2 * mean_alone
