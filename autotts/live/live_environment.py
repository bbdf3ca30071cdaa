"""Live environment: the controller contract played against a real inference backend.

The same controller file that runs on replay stores runs here unchanged: it sees an
:class:`~autotts.core.contract.EpisodeState` and yields the same actions, which become real
generation:

- ``Branch(k)`` opens ``k`` branches from the question's prompt and generates their first
  interval of Δ tokens, all ``k`` as one batch;
- ``Continue(ids, steps)`` generates ``steps × Δ`` more tokens on each branch, as one batch,
  from its exact token ids (the backend's prefix cache reuses them);
- ``probe=True`` (and ``Probe(ids)``) appends the answer-forcing suffix to each branch's
  prefix and greedily decodes a few tokens (one batch; the branch does not advance);
- ``Prune(ids)`` drops branches: never sent to the engine again (none is in flight then);
- a branch finishes at EOS or ``max_branch_tokens``; its final answer is its last
  ``\\boxed{}`` (``ERR`` if none), like the shipped data;
- ``Read(k)`` opens ``k`` branches and generates each to the end in one batch;
- with ``settings.logprobs`` (the default), ``state.signals`` holds the ``confidence`` and
  ``logprob`` of every generated interval (:mod:`autotts.core.signals`), as replay stores do.

Cost: ``tokens`` counts every generated token, probe decodes included (``ChargeAgain`` is
free), ``probe_tokens`` the probes'. Traces have the replay's JSONL format.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..core.contract import ActionError, Controller, EpisodeState
from ..core.engine import (
    BRANCH,
    CHARGE_AGAIN,
    CONTINUE,
    GENERATE,
    PROBE,
    PRUNE,
    READ,
    EngineFailure,
    EpisodeResult,
    check_finished,
    inactive_message,
    play,
    requested_intervals,
)
from ..core.environment import Environment
from ..core.signals import CONFIDENCE, LOGPROB, interval_means
from ..envs.answers import answers_match, final_answer, probe_answer
from .backend import BackendError, GenerationBackend, GenerationRequest
from .questions import LiveQuestion
from .settings import LiveSettings

SIGNALS = (CONFIDENCE, LOGPROB)  # what live episodes reveal where settings.logprobs > 0


class LiveEnvironment(Environment):
    """Questions × a backend × settings. ``run_episode`` plays one (question, seed) episode;
    the seed decides every branch's sampling seed, so a rerun on the same engine repeats it."""

    def __init__(
        self,
        backend: GenerationBackend,
        questions: Sequence[LiveQuestion],
        settings: LiveSettings | None = None,
        max_branches: int = 64,
        max_steps: int = 10_000,
        env_id: str = "live",
        aliases: Sequence[str] = (),
        others: Mapping[str, GenerationBackend] | None = None,
    ):
        self.backend = backend
        # model names a controller may use: the backend's, aliases of it (e.g. a graph's
        # "Qwen3-8B"), and further served models (``others``: name -> backend)
        self.backends = {backend.model: backend, **dict.fromkeys(aliases, backend)}
        self.backends.update(others or {})
        self.models = tuple(self.backends)
        self.questions = list(questions)
        self.settings = settings or LiveSettings()
        self.max_branches, self.max_steps, self.env_id = max_branches, max_steps, env_id
        self._prompts: dict[tuple[int, int], tuple[int, ...] | str] = {}
        self.signal_names = frozenset(SIGNALS if self.settings.logprobs else ())
        self._suffixes = {id(b): b.encode(self.settings.probe_suffix) for b in self.served}

    @property
    def served(self) -> list[GenerationBackend]:
        """The distinct backends (each once)."""
        return list({id(b): b for b in self.backends.values()}.values())

    def __len__(self) -> int:
        return len(self.questions)

    def gold(self, question: int) -> str:
        return self.questions[question].answer

    def is_correct(self, question: int, answer: str | None) -> bool:
        return answers_match(self.questions[question].answer, answer)

    def prompt(self, question: int, backend: GenerationBackend | None = None):
        """The question's prompt for ``backend`` (default: the main one; token ids where the
        backend has them), built once."""
        backend = backend or self.backend
        key = (question, id(backend))
        if key not in self._prompts:
            s = self.settings
            message = s.user_message(self.questions[question].question)
            self._prompts[key] = backend.prompt(message, s.system, s.thinking)
        return self._prompts[key]

    def run_episode(
        self, controller: Controller, params: dict, question: int, seed: int, **_
    ) -> EpisodeResult:
        """Play one episode live; ``result.seconds`` is its wall-clock latency."""
        start = time.perf_counter()
        result = EpisodeResult(question, seed, None, 0, 0, 0, 0)
        try:
            episode = LiveEpisode(self, question, seed)
        except BackendError as exc:
            result.error = f"inference backend failed: {exc}"
            return result
        result.actions = play(episode, controller, params, result, self.max_steps)
        result.trace_cache = episode.trace
        result.seconds = time.perf_counter() - start
        return result


class _Branch:
    __slots__ = ("prefix", "text", "generated", "seed", "backend")

    def __init__(self, prefix, seed: int, backend: GenerationBackend):
        self.prefix = prefix  # token ids (tuple) or text: prompt + everything generated
        self.text = ""
        self.generated = 0
        self.seed = seed
        self.backend = backend

    def absorb(self, g) -> None:
        """Append a generation to the branch (token ids, or text where there are none)."""
        self.prefix = self.prefix + (g.token_ids if not isinstance(self.prefix, str) else g.text)
        self.text += g.text
        self.generated += g.n_tokens


class LiveEpisode:
    """Engine side of one live episode (the interface :func:`autotts.core.engine.play` drives).
    Accounting is private; ``state`` is the controller's mirror."""

    cost = model_tokens = None  # tokens are the cost

    def __init__(self, env: LiveEnvironment, question: int, seed: int):
        self.env = env
        self.settings = env.settings
        self.seed = seed
        self.question = question
        self._limits = {id(b): self._limit(b) for b in env.served}  # fails early, clearly
        self.state = EpisodeState(
            env.questions[question].question, env.settings.delta, env.max_branches, env.models
        )
        self.branches: list[_Branch] = []
        self.live: list[bool] = []
        self.done: list[bool] = []
        self.depth: list[int] = []
        self.tokens = self.probe_tokens = 0
        self.trace: list[tuple] = []
        self._opened: tuple[int, ...] = ()
        self.state.signals = {name: [] for name in sorted(env.signal_names)}

    def _limit(self, backend: GenerationBackend) -> int:
        """Tokens a branch may generate on ``backend`` (its context minus prompt and probe)."""
        prompt = self.env.prompt(self.question, backend)
        suffix = self.env._suffixes[id(backend)]
        try:
            return self.settings.branch_limit(
                backend.model, backend.max_model_len,
                len(prompt) if not isinstance(prompt, str) else 0, len(suffix) if suffix else 0,
            )  # fmt: skip
        except BackendError as exc:
            raise type(exc)(f"question {self.question}: {exc}") from None

    # --- accounting -----------------------------------------------------------------------

    def _charge(self, tokens: int, probe_tokens: int = 0) -> None:
        self.tokens += tokens + probe_tokens
        self.probe_tokens += probe_tokens
        self.state.tokens, self.state.probe_tokens = self.tokens, self.probe_tokens

    def _record(self, event: str, ids, revealed, done) -> None:
        self.trace.append((event, tuple(ids), tuple(revealed), tuple(done), self.tokens))

    def _check_ids(self, ids) -> None:
        for i in ids:
            if type(i) is not int or not 0 <= i < len(self.live):
                raise ActionError(inactive_message(i, self.live, self.state.pruned))

    # --- actions --------------------------------------------------------------------------

    def open(self, k, model=None) -> range:
        start = len(self.live)
        if type(k) is not int or k < 0:
            raise ActionError(f"branch count must be a non-negative int, got {k!r}")
        self._check_model(model)
        if start + k > self.env.max_branches:
            raise ActionError(
                f"cannot open {k} more branches: {start} of {self.env.max_branches} already "
                "opened (state.max_branches)"
            )
        state = self.state
        state.model.extend([model or state.models[0]] * k)
        backend = self.env.backends[model or state.models[0]]
        prompt = self.env.prompt(self.question, backend)
        for i in range(start, start + k):
            self.branches.append(_Branch(prompt, self._branch_seed(i), backend))
        for values, fill in (
            (self.live, True), (self.done, False), (self.depth, 0), (state.depth, 0),
            (state.answer, None), (state.finished, False), (state.pruned, False),
        ):  # fmt: skip
            values.extend([fill] * k)
        state.history.extend([] for _ in range(k))
        for seen in state.signals.values():
            seen.extend([] for _ in range(k))
        self._opened = tuple(range(start, start + k))  # a Branch action extends these next
        return range(start, start + k)

    def _check_model(self, model) -> None:
        if model is not None and model not in self.state.models:
            raise ActionError(
                f"model {model!r} is not available: this live environment runs "
                f"{self.state.models[0]} (names: {list(self.state.models)}; add one as an alias)"
            )

    def generate(self, prompt, model, max_tokens) -> str:
        """Free-form generation for a controller-written prompt (one batch of one)."""
        self._check_model(model)
        if not isinstance(prompt, str) or type(max_tokens) is not int or max_tokens < 1:
            raise ActionError("Generate needs a str prompt and max_tokens >= 1")
        if prompt.encode("utf-8", "replace").decode() != prompt:  # (lone surrogates)
            raise ActionError("Generate's prompt is not valid Unicode text")
        s = self.settings
        backend = self.env.backends[model or self.state.models[0]]
        max_tokens = min(max_tokens, self._limits[id(backend)])  # a branch's at most
        prefix = backend.prompt(prompt, s.system, s.thinking)
        seed = self._branch_seed(len(self.trace) + 7919)
        request = GenerationRequest(prefix, max_tokens, s.sampling, seed)
        (g,) = self._generate([(backend, request)])
        self._charge(g.n_tokens)
        self._record(GENERATE, (), (g.text,), ())
        return g.text

    def _branch_seed(self, i: int) -> int:
        return (self.seed * 1_000_003 + self.question * 10_007 + i * 101) % (2**31 - 1)

    def extend(self, ids, k, probe: bool) -> None:
        requested_intervals(ids, k)
        self._check_ids(ids)
        steps = [k] * len(ids) if isinstance(k, int) else list(k)
        for i in ids:
            if not self.live[i]:
                raise ActionError(inactive_message(i, self.live, self.state.pruned))
        if len(set(ids)) != len(ids):
            raise ActionError(f"branch ids repeat in {list(ids)}; list each branch once")
        delta = self.settings.delta
        requests = []
        for i, n in zip(ids, steps, strict=True):
            b = self.branches[i]
            budget = min(n * delta, self._limits[id(b.backend)] - b.generated)
            requests.append((b.backend, self._request(b, budget)))
        generations = self._generate(requests)
        finished_now = []
        for i, n, g in zip(ids, steps, generations, strict=True):
            b, before = self.branches[i], self.depth[i]
            b.absorb(g)
            if g.finished or g.n_tokens == 0 or b.generated >= self._limits[id(b.backend)]:
                self._finish(i)  # EOS, the token limit, or nothing more generated
                finished_now.append(i)
            else:
                self.depth[i] = self.state.depth[i] = self.depth[i] + n
            self._reveal_signals(i, g, before)
        self._charge(sum(g.n_tokens for g in generations))
        if probe:
            self._probe([i for i in ids if self.live[i]])
        event = BRANCH if tuple(ids) == self._opened else CONTINUE
        self._opened = ()
        self._record(event, ids, (self.state.answer[i] for i in ids), finished_now)

    def _request(self, b: _Branch, max_tokens: int) -> GenerationRequest:
        s = self.settings
        seed = (b.seed + b.generated) % (2**31 - 1)
        return GenerationRequest(b.prefix, max(1, max_tokens), s.sampling, seed, s.logprobs)

    def _reveal_signals(self, i: int, g, before: int) -> None:
        """One value per interval the generation ``g`` added to branch ``i`` (its tokens cut
        into Δ-token chunks from the interval boundary at depth ``before``)."""
        n, delta = self.depth[i] - before, self.settings.delta
        for name, per_token in ((CONFIDENCE, g.confidences), (LOGPROB, g.logprobs)):
            if name in self.state.signals:
                values = [None] * n if per_token is None else interval_means(per_token, delta, n)
                self.state.signals[name][i].extend(values)

    def _generate(self, requests) -> list:
        """Run ``(backend, request)`` pairs: one batch per backend (the backends at once),
        results in order."""
        by_backend: dict[int, list[int]] = {}
        for n, (backend, _) in enumerate(requests):
            by_backend.setdefault(id(backend), []).append(n)
        results: list = [None] * len(requests)

        def run(positions: list[int]) -> None:
            backend = requests[positions[0]][0]
            batch = backend.generate([requests[n][1] for n in positions])
            for n, g in zip(positions, batch, strict=True):
                results[n] = g

        groups = list(by_backend.values())
        try:
            if len(groups) == 1:
                run(groups[0])
            elif groups:  # several backends (servers, engines) work at the same time
                with ThreadPoolExecutor(max_workers=len(groups)) as pool:
                    for future in [pool.submit(run, positions) for positions in groups]:
                        future.result()
        except BackendError as exc:
            raise EngineFailure(str(exc)) from None
        return results

    def _finish(self, i: int) -> None:
        b, state = self.branches[i], self.state
        answer = final_answer(b.text)
        self.depth[i] = state.depth[i] = b.generated // self.settings.delta + 1
        state.answer[i] = answer
        state.history[i].append(answer)
        self.done[i] = state.finished[i] = True
        self.live[i] = False
        state.finals.append(answer)

    def _probe(self, ids) -> None:
        """Reveal each listed open branch's answer (one greedy batch; a branch listed again is
        decoded once, but revealed and charged again, as on replay)."""
        if not ids:
            return
        s = self.settings
        requests, once = [], list(dict.fromkeys(ids))
        for i in once:
            b = self.branches[i]
            suffix = self.env._suffixes[id(b.backend)]
            prefix = b.prefix + (suffix if not isinstance(b.prefix, str) else s.probe_suffix)
            greedy = GenerationRequest(prefix, s.probe_tokens, {"temperature": 0.0}, 0)
            requests.append((b.backend, greedy))
        decoded = dict(zip(once, self._generate(requests), strict=True))
        state = self.state
        for i in ids:
            answer = probe_answer(decoded[i].text, s.probe_suffix)
            state.answer[i] = answer
            state.history[i].append(answer)
        self._charge(0, sum(decoded[i].n_tokens for i in ids))

    def probe(self, ids) -> None:
        self._check_ids(ids)
        targets = [i for i in ids if not self.done[i] and self.depth[i] > 0]
        self._probe(targets)
        self._record(PROBE, ids, (self.state.answer[i] for i in ids), ())

    def prune(self, ids) -> None:
        self._check_ids(ids)
        for i in ids:
            self.state.pruned[i] = True
            self.live[i] = False
        self._record(PRUNE, ids, (), ())

    def charge_again(self, i) -> None:
        check_finished(i, self.done)
        self._record(CHARGE_AGAIN, (i,), (), ())

    def read(self, k, model=None) -> range:
        ids = self.open(k, model)
        self._opened = ()
        requests = [
            (b.backend, self._request(b, self._limits[id(b.backend)]))
            for b in (self.branches[i] for i in ids)
        ]
        generations = self._generate(requests)
        for i, g in zip(ids, generations, strict=True):
            self.branches[i].absorb(g)
            self._finish(i)
            self._reveal_signals(i, g, 0)
        self._charge(sum(g.n_tokens for g in generations))
        self._record(READ, ids, (self.state.answer[i] for i in ids), ids)
        return ids

    @property
    def abandoned(self) -> bool:
        """Whether nobody wants its answer any more (a served request's client left)."""
        return any(getattr(b, "cancelled", False) for b in self.env.served)

    @property
    def texts(self) -> list[str]:
        """Every branch's generated text (for reports and debugging; not for controllers)."""
        return [b.text for b in self.branches]


__all__ = ["LiveEnvironment", "LiveEpisode", "LiveQuestion"]
