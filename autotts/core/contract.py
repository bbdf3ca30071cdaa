"""The controller contract: actions, the observable episode state, and the ``Controller`` base.

A controller is a policy over a pool of reasoning branches for one question. It is written as
a Python *generator*: it ``yield``\\ s actions, receives each action's result back from the
``yield`` expression, and finally ``return``\\ s its answer. The controller never holds a
reference to the environment, only to an :class:`EpisodeState` the environment keeps up to
date, which contains nothing a real run could not know: no gold answer, no probe that was not
revealed, no branch that was not opened, no future depth. The same generator runs unchanged
against replay stores and live inference backends: every action that names branches
takes a list of ids, so a live backend can batch all of them into one engine call.

Actions (each ``yield`` returns the value shown):

==========================  ========================================================  ==========
``Branch(k, probe=True,     open ``k`` new branches, generate their first interval     new ids
model=None)``
``Continue(ids, steps=1,    generate up to ``steps`` more intervals on each branch     ``None``
probe=True)``               (fewer if it finishes)
``Probe(ids)``              reveal each branch's current intermediate answer           ``None``
``Prune(ids)``              stop spending on branches (their history stays visible)    ``None``
``Read(k, model=None)``     open ``k`` new branches and generate them to the end        new ids
``Note(text)``              annotate the execution trace (free)                         ``None``
``ChargeAgain(i)``          charge finished branch ``i``'s last interval again (the      ``None``
                            AutoTTS reference's accounting; :mod:`autotts.loading.autotts_paper_api`)
``Generate(prompt,          generate text for a prompt the controller writes (live      the text
model=None, max_tokens)``   backends only: replay stores hold answers, not text)
==========================  ========================================================  ==========

``return answer`` (a ``str``, or ``Answer(value, reason)``) is the ANSWER action.
``probe=True`` reveals the answer reached at the end of the generated interval(s); a branch
that finishes always reveals its final answer. Cost is the number of generated tokens (plus
``probe_cost`` tokens per probe where the environment charges for probes).

``model`` picks which of ``state.models`` generates the new branches. Single-model
environments have one model, and ``model=None`` means it; multi-model (cross-model)
environments require a name, and additionally price every generated token by its model
(``state.cost_per_token``, FLOPs or $), keeping the running total in ``state.cost``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from typing import Any, ClassVar

from ..errors import AutoTTSError


class ActionError(AutoTTSError, RuntimeError):
    """A controller asked for something the environment cannot do (the message says what)."""


class ControllerFailure(AutoTTSError, RuntimeError):
    """A controller crashed, misbehaved or ran out of steps during an episode."""


class Action:
    """Base of everything a controller may yield."""

    __slots__ = ()


class Branch(Action):
    """Open ``k`` new branches and generate each one's first interval."""

    __slots__ = ("k", "probe", "model")

    def __init__(self, k: int = 1, probe: bool = True, model: str | None = None):
        self.k = k
        self.probe = probe
        self.model = model

    def __repr__(self) -> str:
        model = f", model={self.model!r}" if self.model is not None else ""
        return f"Branch(k={self.k}, probe={self.probe}{model})"


class Continue(Action):
    """Generate up to ``steps`` more intervals on each listed active branch (``steps`` may be
    one int for all, or a list with one int per id); branches are advanced in the listed order."""

    __slots__ = ("ids", "steps", "probe")

    def __init__(self, ids: Sequence[int], steps: int | Sequence[int] = 1, probe: bool = True):
        self.ids = ids
        self.steps = steps
        self.probe = probe

    def __repr__(self) -> str:
        steps = self.steps if isinstance(self.steps, int) else list(self.steps)
        return f"Continue(ids={list(self.ids)}, steps={steps}, probe={self.probe})"


class Probe(Action):
    """Reveal the current intermediate answer of each listed branch (does not advance it)."""

    __slots__ = ("ids",)

    def __init__(self, ids: Sequence[int]):
        self.ids = ids

    def __repr__(self) -> str:
        return f"Probe(ids={list(self.ids)})"


class Prune(Action):
    """Stop spending on the listed branches; what they revealed stays visible."""

    __slots__ = ("ids",)

    def __init__(self, ids: Sequence[int]):
        self.ids = ids

    def __repr__(self) -> str:
        return f"Prune(ids={list(self.ids)})"


class Read(Action):
    """Open ``k`` new branches and generate each to completion ("read a whole branch")."""

    __slots__ = ("k", "model")

    def __init__(self, k: int = 1, model: str | None = None):
        self.k = k
        self.model = model

    def __repr__(self) -> str:
        model = f", model={self.model!r}" if self.model is not None else ""
        return f"Read(k={self.k}{model})"


class Note(Action):
    """Free annotation recorded in the execution trace (why the controller did something)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Note({self.text!r})"


class ChargeAgain(Action):
    """Charge the last interval of finished branch ``branch`` again, revealing nothing: the
    AutoTTS reference's accounting of ``probe_more`` on a finished branch, which
    :mod:`autotts.loading.autotts_paper_api` reproduces on replay. It only ever adds cost; live
    environments, which charge generated tokens only, record it at no cost."""

    __slots__ = ("branch",)

    def __init__(self, branch: int):
        self.branch = branch

    def __repr__(self) -> str:
        return f"ChargeAgain({self.branch!r})"


class Generate(Action):
    """Generate up to ``max_tokens`` of text for ``prompt`` (one user turn, the environment's
    chat template applied) with ``model``; the reply is the generated text. Live backends
    only: a replay environment answers with an :class:`ActionError`."""

    __slots__ = ("prompt", "model", "max_tokens")

    def __init__(self, prompt: str, model: str | None = None, max_tokens: int = 2048):
        self.prompt = prompt
        self.model = model
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return (
            f"Generate({self.prompt[:40]!r}…, model={self.model!r}, max_tokens={self.max_tokens})"
        )


class Answer:
    """A final answer with the reason the controller stopped, for the trace."""

    __slots__ = ("value", "reason")

    def __init__(self, value: str, reason: str = ""):
        self.value = value
        self.reason = reason

    def __repr__(self) -> str:
        return f"Answer({self.value!r}, reason={self.reason!r})"


class EpisodeState:
    """What a controller can observe about its episode, indexed by branch id (0, 1, … in
    opening order). The environment updates it in place after every action; controllers must
    treat it as read-only.

    - ``question``: the problem text; ``delta``: tokens per interval;
    - ``max_branches``: how many branches this environment can open at most;
    - ``depth[i]``: intervals generated so far (a finished branch counts its finishing step);
    - ``answer[i]``: latest revealed answer (probe or final), ``None`` before the first probe;
    - ``history[i]``: every answer revealed on branch ``i``, in order;
    - ``finished[i]`` / ``pruned[i]``: status flags; ``finals``: final answers in finishing order;
    - ``tokens``: total cost so far (generation + probe cost); ``probe_tokens``: its probe part.
      An unfinished branch has generated ``delta * depth[i]`` tokens.
    - ``models``: the models branches can be opened with; ``model[i]``: branch ``i``'s model;
    - ``cost_per_token``: each model's price of one generated token (FLOPs or $) and ``cost``
      the total so far, in multi-model environments; both ``None`` where tokens are the cost.
    - ``signals``: extra observations an environment type offers, by name (e.g.
      ``signals["confidence"][i]``: one value per generated interval of branch ``i``); empty in
      the built-in environments. Read them with ``state.signals.get(name)`` so a controller
      also runs where the signal does not exist.
    """

    __slots__ = (
        "question",
        "delta",
        "max_branches",
        "depth",
        "answer",
        "history",
        "finished",
        "pruned",
        "finals",
        "tokens",
        "probe_tokens",
        "models",
        "model",
        "cost",
        "cost_per_token",
        "signals",
    )

    def __init__(self, question: str, delta: int, max_branches: int, models: tuple = ()):
        self.question = question
        self.delta = delta
        self.max_branches = max_branches
        self.depth: list[int] = []
        self.answer: list[str | None] = []
        self.history: list[list[str]] = []
        self.finished: list[bool] = []
        self.pruned: list[bool] = []
        self.finals: list[str] = []
        self.tokens = 0
        self.probe_tokens = 0
        self.models: tuple[str, ...] = tuple(models)
        self.model: list[str] = []
        self.cost: float | None = None
        self.cost_per_token: dict[str, float] | None = None
        self.signals: dict[str, Any] = {}

    @property
    def opened(self) -> int:
        """Number of branches opened so far."""
        return len(self.depth)

    def active(self) -> list[int]:
        """Ids of branches that are neither finished nor pruned."""
        finished, pruned = self.finished, self.pruned
        return [i for i in range(len(finished)) if not (finished[i] or pruned[i])]

    def __repr__(self) -> str:
        return (
            f"EpisodeState(opened={self.opened}, active={len(self.active())}, "
            f"finished={sum(self.finished)}, tokens={self.tokens})"
        )


ControllerRun = Generator[Action, Any, "str | Answer"]


class Controller(ABC):
    """Base class of every controller program (baseline, discovered, or LLM-written).

    A controller file defines exactly one subclass. The contract:

    - ``name``: short identifier used in tables (``"cmc"``).
    - ``requires``: the ``state.signals`` the controller cannot run without (e.g.
      ``("confidence",)``); evaluation refuses it up front on environments that lack one.
    - ``schedule(beta)``: a *deterministic, monotone* map from the single knob
      ``beta`` ∈ [0, 1] (larger = more budget) to every hyper-parameter ``run`` takes, returned
      as a dict. Sweeping ``beta`` traces the controller's accuracy-cost curve; hand-designed
      baselines may also be swept over one of their parameters directly (e.g. ``n``).
    - ``run(state, **params)``: a generator that yields actions (see this module's docstring),
      reads the :class:`EpisodeState`, and returns the answer string (or :class:`Answer`).
      It must be deterministic given the state it observes (no randomness, no clock, no I/O)
      and keep no information across episodes.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    @abstractmethod
    def schedule(beta: float) -> dict[str, Any]:
        """Map ``beta`` ∈ [0, 1] to the keyword arguments of :meth:`run`."""

    @abstractmethod
    def run(self, state: EpisodeState, **params: Any) -> ControllerRun:
        """Control one episode: yield actions, return the answer."""

    def params(self, beta: float | None = None, **overrides: Any) -> dict[str, Any]:
        """Hyper-parameters for ``beta`` (default 1.0) with explicit ``overrides`` applied."""
        if beta is not None and not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        params = dict(self.schedule(1.0 if beta is None else beta))
        unknown = set(overrides) - set(params)
        if unknown:
            raise ValueError(
                f"{self.name or type(self).__name__} has no parameter(s) {sorted(unknown)}; "
                f"its schedule defines {sorted(params)}"
            )
        params.update(overrides)
        return params


class RemoteController(ABC):
    """A controller whose code never runs in this process: an untrusted (LLM-written) one,
    which runs in the sandbox (:class:`autotts.sandbox.SandboxedController`).
    :func:`~autotts.core.engine.play` hands it the episode's engine, and it plays the episode
    from where its code runs, action by action, on that engine, which keeps every piece of the
    episode's data. Whatever plays episodes (replay, live, serving) plays it like any
    :class:`Controller`.

    ``params(beta, **overrides)`` is the configuration, ``{"beta": β, "overrides": {...}}``,
    that the remote side turns into ``run()`` parameters with the controller's own schedule.
    """

    name: str = ""
    description: str = ""
    requires: tuple[str, ...] = ()

    def params(self, beta: float | None = None, **overrides: Any) -> dict[str, Any]:
        """The configuration the remote side computes ``run()``'s parameters from."""
        if beta is not None and not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        return {"beta": 1.0 if beta is None else beta, "overrides": dict(overrides)}

    @abstractmethod
    def play_episode(self, episode, params: dict, result, max_steps: int) -> list[tuple]:
        """Play one episode on the engine ``episode`` at the configuration ``params``: fill
        ``result`` as :func:`~autotts.core.engine.play` does and return the action log."""
