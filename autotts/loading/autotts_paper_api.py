"""Controllers written for the AutoTTS paper's environment API, run unchanged.

The AutoTTS reference environment hands a method (a subclass of its ``LLMDesignedMethod``
with ``solve(question)``) a ``Question`` object that it calls synchronously:
``probe_new()`` → ``(answer, index, finished)``, ``probe_more(index)`` → ``(answer,
finished)``, ``get_new_branch_final_answer()``, ``get_cost_per_branch_active()``,
``get_seq_and_total_tokens()`` and ``probe_freq``. :func:`legacy_controller_class` wraps such
a method class (recognised by :func:`autotts.loading.controller_files.is_legacy_method`) as an ordinary
:class:`~autotts.core.contract.Controller`, so the file runs on
replay and live environments with traces, step limits and the same cost convention:

    autotts evaluate path/to/methods.py:ASCMethod@max_samples=64@threshold=0.95

**Inversion of control.** ``solve`` runs in a greenlet (a coroutine with its own stack, no
thread: the sandbox forbids threads). Each API call switches back to the controller's
generator with one action — ``probe_new`` is ``Branch(1)``, ``probe_more(i)`` is
``Continue([i])``, ``get_new_branch_final_answer`` is ``Read(1)`` — and resumes with the state
the action left. Every call is one action of one branch, so live backends cannot batch a
legacy method's branches (its code waits for each answer before the next call).

**Instances.** Each episode gets a fresh instance of the method, and calls it as the
reference's ``Question.solve`` does: ``method(question)`` where the class defines
``__call__`` (the agent-written files route it to ``solve``), else ``method.solve(question)``.
The reference reuses one instance for every question and seed in turn, so a method that
carries information from one question to the next would not reproduce; autotts controllers
keep none across episodes, which is what lets episodes run in any order and in parallel.

**Parameters.** The method's constructor keywords (their defaults form the schedule) plus
``beta``, passed as ``config={"beta": β}`` (CMC's ``OptimalController`` reads it there;
methods that ignore it have a flat β curve). The ``config`` keys the method reads with a
literal default (``self.config.get("n_init", 4)``) are parameters too, so
``file.py:OptimalController@beta=0.5@n_init=8`` passes ``config={"beta": 0.5, "n_init": 8}``
(a key at its default is not passed, as the reference pipeline would not).

**The reference's quirks, reproduced where results depend on them:**

- ``probe_new`` past the last branch raises ``ValueError``, ``get_new_branch_final_answer``
  ``IndexError`` — the reference methods catch exactly these;
- ``probe_more(i)`` accepts ``i`` up to the number opened (``ValueError`` beyond); ``i``
  equal to it explores a branch that was never opened, which makes the reference evaluator
  reject the episode (a token cost mismatch): here the episode ends with that error. A
  negative ``i`` counts from the end of the list of every branch, as Python's indexing does:
  a branch that is open only once all are (``IndexError`` below ``-n``, or for ``i == n``);
- ``probe_more`` on a finished branch returns its final answer again and charges the
  branch's last interval again each time, as the reference does (``ChargeAgain``: on replay
  the engine charges it, so the parent's recomputation from the action log includes it; live,
  where cost is generated tokens, it is free);
- the one difference: ``probe_more`` on a branch read whole by
  ``get_new_branch_final_answer``. The reference would walk that branch's probes again from
  the first (revealing and charging each, reporting it unfinished) though it charged the whole
  branch already; here it is finished, gives its final answer and costs nothing (a note in the
  trace);
- ``get_cost_per_branch_active`` is each opened branch's cost so far, in opening order;
- ``probe_freq`` is read-only: assigning it in the reference changes the price of each step
  (not what a step reveals), a way to set one's own cost, so here it is an error;
- an answer that is not a ``str`` never matches a gold answer (the reference compares with
  ``==``), so it is returned as a string that cannot match.

**Files that import the reference's helpers.** A method file may define ``LLMDesignedMethod``
itself or take it from the reference's ``controller_api`` module; such an import gets this
module's equivalents (:class:`LLMDesignedMethod`, :class:`MethodTraceRecorder`,
:class:`MethodStrategyAdapter`), in process and in the sandbox. ``from data_loader import
Question`` (for type hints) gets :class:`LegacyQuestion`; its ``ModelandTask`` evaluator
exists only to be named (a ``__main__`` block does not run here).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import operator
from abc import ABC, abstractmethod
from typing import Any

from ..core.contract import (
    Answer,
    Branch,
    ChargeAgain,
    Continue,
    Controller,
    ControllerFailure,
    Note,
    Read,
)
from .parsing import parse_source


def _constructor_defaults(method_class: type) -> dict[str, Any]:
    params = inspect.signature(method_class.__init__).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.name not in ("self", "config")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is not p.empty
    }


def _config_defaults(method_class: type, source: str) -> dict[str, Any]:
    """The ``config`` keys the class (or a base class in the same file) reads as
    ``<...config...>.get("key", literal default)``, with their defaults (``beta`` aside)."""
    try:
        tree = parse_source(source)
    except SyntaxError:
        return {}
    lineage = {cls.__name__ for cls in method_class.__mro__}
    found: dict[str, Any] = {}
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name in lineage):
            continue
        for call in ast.walk(node):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "get"
                and len(call.args) == 2
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
                and "config" in ast.unparse(call.func.value)
            ):
                continue
            with contextlib.suppress(ValueError, TypeError, SyntaxError):
                default = ast.literal_eval(call.args[1])
                if isinstance(default, bool | int | float | str):
                    found.setdefault(call.args[0].value, default)
    found.pop("beta", None)
    return found


def legacy_controller_class(method_class: type, source: str = "") -> type[Controller]:
    """A :class:`Controller` subclass running ``method_class`` (see the module docstring);
    ``source``, the file's text, tells which ``config`` keys the method reads."""
    defaults = _constructor_defaults(method_class)
    takes_config = "config" in inspect.signature(method_class.__init__).parameters
    config_defaults = {
        key: value
        for key, value in (_config_defaults(method_class, source) if takes_config else {}).items()
        if key not in defaults
    }

    class AutoTTSMethod(Controller):
        name = str(getattr(method_class, "NAME", "") or method_class.__name__)
        description = (
            f"AutoTTS-API method {method_class.__name__} (autotts.loading.autotts_paper_api)"
        )

        @staticmethod
        def schedule(beta: float) -> dict:
            return {**defaults, **config_defaults, "beta": beta}

        def run(self, state, beta: float, **kwargs):
            config = {"beta": beta}
            for key, default in config_defaults.items():  # only what differs from the default
                if (value := kwargs.pop(key, default)) != default:
                    config[key] = value
            method = method_class(**kwargs, **({"config": config} if takes_config else {}))
            return (yield from _drive(method, state))

    AutoTTSMethod.__name__ = AutoTTSMethod.__qualname__ = f"AutoTTS_{method_class.__name__}"
    return AutoTTSMethod


def _drive(method, state):
    """Run ``method.solve`` in a greenlet, yielding the action of each API call."""
    from greenlet import getcurrent, greenlet

    question = LegacyQuestion(state, getcurrent().switch)  # back here, from inside solve
    entry = method if callable(method) else method.solve  # the reference calls __call__
    worker = greenlet(lambda: ("answer", entry(question)))
    message = worker.switch()
    while message[0] == "action":
        before = state.tokens
        reply = yield message[1]
        question._charge(message[2], state.tokens - before)
        message = worker.switch(reply)
    answer = message[1]
    if isinstance(answer, str):
        return Answer(answer, f"{type(method).__name__}.solve")
    return Answer(f"<{type(answer).__name__} answer {answer!r:.40}: never matches>", "not a str")


class LegacyQuestion:
    """The reference ``Question`` API over the controller contract (one action per call)."""

    def __init__(self, state, act_switch):
        self._state = state
        self._act_switch = act_switch  # switches to the greenlet driving the controller
        self._costs: list[int] = []  # per opened branch, in opening order
        self._read: set[int] = set()  # branches opened by get_new_branch_final_answer

    def _act(self, action, branch: int | None = None):
        """Hand ``action`` to the controller's generator; resume with its reply."""
        return self._act_switch(("action", action, branch))

    def _charge(self, branch: int | None, tokens: int) -> None:
        if branch is not None:
            while len(self._costs) <= branch:
                self._costs.append(0)
            self._costs[branch] += tokens

    def _open_next(self, action, out_of_range: Exception) -> int:
        """Open the next branch in seed order with ``action``; past the last one, raise what
        the reference raises there (its methods catch it)."""
        i = self._state.opened
        if i >= self._state.max_branches:
            raise out_of_range
        self._act(action, i)
        return i

    def probe_new(self):
        i = self._open_next(Branch(1), ValueError("Index out of range for branches."))
        return self._state.answer[i], i, self._state.finished[i]

    def probe_more(self, index):
        state = self._state
        index = operator.index(index)  # numpy integers too, as list indexing accepts them
        n = state.max_branches
        if index > state.opened:
            raise ValueError("Index out of range for branches.")
        if not -n <= index < n:
            raise IndexError("list index out of range")
        if index < 0:  # the reference indexes its list of every branch: from the end
            index += n
        if index >= state.opened:
            raise ControllerFailure(
                f"probe_more({index}) explores a branch that was never opened (only "
                f"{state.opened} are); the AutoTTS evaluator rejects such an episode "
                "(token cost mismatch)"
            )
        if state.finished[index]:  # the reference charges its last interval again
            if index in self._read:
                self._act(Note(f"probe_more({index}) on a branch read whole: free here"))
            else:
                self._act(ChargeAgain(index), index)
            return state.answer[index], True
        self._act(Continue([index]), index)
        return state.answer[index], state.finished[index]

    def get_new_branch_final_answer(self):
        i = self._open_next(Read(1), IndexError("list index out of range"))
        self._read.add(i)
        return self._state.answer[i]

    def get_cost_per_branch_active(self):
        return [*self._costs, *[0] * (self._state.opened - len(self._costs))]

    def get_seq_and_total_tokens(self):
        return 0, self._state.tokens

    @property
    def probe_freq(self) -> int:
        """The store's probe interval Δ (read-only: the reference charges whatever value a
        method assigns per step, which would let a method set its own price)."""
        return self._state.delta

    @probe_freq.setter
    def probe_freq(self, value) -> None:
        raise AttributeError(
            f"probe_freq is the store's probe interval ({self._state.delta} tokens) and cannot "
            f"be set to {value!r}: the reference would charge the new value per step without "
            "changing what a step reveals"
        )

    @property
    def _cost_per_branch(self):
        """The reference's per-branch cost list (every branch, unopened ones 0), which some
        methods read directly."""
        active = self.get_cost_per_branch_active()
        return [*active, *[0] * (self._state.max_branches - len(active))]

    def __getattr__(self, name):
        raise AttributeError(
            f"the AutoTTS-API question has no {name!r}: it offers probe_new(), probe_more(i), "
            "get_new_branch_final_answer(), get_cost_per_branch_active(), "
            "get_seq_and_total_tokens() and probe_freq"
            + (
                " (the reference's shuffling rng is not handed out: a controller's choices "
                "depend only on what it observed)"
                if name == "rng"
                else ""
            )
        )


class LLMDesignedMethod(ABC):
    """The reference's method base, for files that import it from ``controller_api``:
    ``config`` (a dict, empty by default), ``solve(question)``, ``description()``."""

    NAME = "unnamed_method"

    def __init__(self, config: dict[str, Any] | None = None):
        self.config = config or {}

    @abstractmethod
    def solve(self, question) -> str:
        """The method's answer to ``question`` (a :class:`LegacyQuestion`)."""

    def description(self) -> str:
        return f"{self.NAME} | config={self.config}" if self.config else self.NAME


class MethodTraceRecorder:
    """The reference's step recorder: ``add_step(**fields)``, ``to_list()``."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def add_step(self, **fields: Any) -> None:
        self.steps.append(dict(fields))

    def to_list(self) -> list[dict[str, Any]]:
        return list(self.steps)


class MethodStrategyAdapter:
    """The reference's wrapper for its older pipeline: ``execute(question)`` solves."""

    def __init__(self, method: LLMDesignedMethod):
        self.method = method

    def execute(self, question) -> str:
        return self.method.solve(question)

    def description(self) -> str:
        return self.method.description()


# `from data_loader import Question` (type hints) gets the question the adapter hands out
Question = LegacyQuestion


class ModelandTask:
    """The reference's evaluator, named by files that import it for a ``__main__`` block;
    autotts evaluates instead (``autotts evaluate file.py:Class``)."""

    def __init__(self, *_, **__):
        raise RuntimeError(
            "ModelandTask is the AutoTTS reference's evaluator over its test_environment/ "
            "files; evaluate the method with `autotts evaluate file.py:Class` (or "
            "autotts.evaluate) instead"
        )


__all__ = [
    "LLMDesignedMethod",
    "LegacyQuestion",
    "MethodStrategyAdapter",
    "MethodTraceRecorder",
    "legacy_controller_class",
]
