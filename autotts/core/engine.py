"""The episode engine every environment shares: the action interpreter :func:`play` (which
drives a controller's generator, validates each action and hands it to an episode engine),
the action log and :class:`EpisodeResult`. The environment contract itself is
:mod:`autotts.core.environment`; :mod:`autotts.envs.registry` turns environment ids into
environments.

An *episode engine* (replay's ``_Episode``, the cross-model and live episodes) implements
``state``, ``open``, ``extend``, ``read``, ``probe``, ``prune``, ``tokens``,
``probe_tokens``, ``live`` and ``cost``/``model_tokens``; :func:`play` checks every action's
arguments (exact built-in ints in range, flags, model names) before the engine sees them.
"""

from __future__ import annotations

import os
import sys
import traceback  # at import: the sandbox worker may import nothing once contained
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import RunFailure
from .arguments import (  # noqa: F401 (re-exported: the engines import them from here)
    MAX_STEPS_PER_ACTION,
    check_finished,
    check_ids,
    flag,
    inactive_message,
    model_name,
    requested_intervals,
)
from .contract import (
    ActionError,
    Answer,
    Branch,
    ChargeAgain,
    Continue,
    Controller,
    ControllerFailure,
    Generate,
    Note,
    Probe,
    Prune,
    Read,
    RemoteController,
)

DEFAULT_MAX_STEPS = 20_000

# Trace event kinds (also the "action" field of the JSONL schema in traces/).
BRANCH, CONTINUE, PROBE, PRUNE, READ, NOTE = "branch", "continue", "probe", "prune", "read", "note"
GENERATE, CHARGE_AGAIN = "generate", "charge_again"


@dataclass(slots=True)
class EpisodeResult:
    """Outcome of one episode.

    ``actions`` is the episode's action log (recorded with ``record_trace=True``): one entry
    per executed action, from which :attr:`trace` rebuilds, on first access, the readable trace
    of tuples ``(action, ids, revealed, finished, tokens_after)`` (see
    :func:`autotts.results.traces.episode_record` for its JSON form). Logging actions and replaying
    them on demand keeps recording cheap in the hot loop while every trace stays available.
    """

    question: int
    seed: int
    answer: str | None
    tokens: int
    probe_tokens: int
    opened: int
    steps: int
    reason: str = ""
    error: str | None = None
    actions: list[tuple] | None = field(default=None, repr=False)
    source: tuple | None = field(default=None, repr=False, compare=False)
    trace_cache: list[tuple] | None = field(default=None, repr=False, compare=False)
    seconds: float = field(default=0.0, repr=False, compare=False)  # wall clock (live runs)
    cost: float | None = None  # priced spending (cross-model environments: FLOPs or $)
    model_tokens: dict[str, int] | None = field(default=None, compare=False)
    # the exception that ended the episode, with its traceback (in this process only)
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def trace(self) -> list[tuple] | None:
        """The readable trace (``None`` when the episode ran with ``record_trace=False``).
        Replay rebuilds it from ``actions`` and ``source``; live episodes record it as they go
        (in ``trace_cache``)."""
        if self.trace_cache is None and self.actions is not None and self.source is not None:
            self.trace_cache = _rebuild_trace(self.source, self.actions)
        return self.trace_cache


class EngineFailure(RunFailure):
    """The engine behind an episode (e.g. a live inference backend) failed; not the
    controller's fault, but the episode cannot go on."""


def play(episode, controller: Controller, params: dict, result: EpisodeResult, max_steps: int):
    """Run ``controller`` on ``episode`` (a replay or live episode engine: ``state``,
    ``open``, ``extend``, ``read``, ``probe``, ``prune``, ``tokens``, ``probe_tokens``,
    ``live``, and ``cost``/``model_tokens``, ``None`` where tokens are the cost), fill
    ``result`` and return the action log. Failures of the controller or of the
    engine end the episode with ``result.error`` set. A :class:`RemoteController` plays it
    from where its code runs (an untrusted one: in the sandbox), on this very engine."""
    if isinstance(controller, RemoteController):
        return controller.play_episode(episode, params, result, max_steps)
    log: list[tuple] = []
    append = log.append
    steps = 0
    try:
        gen = start_run(controller, episode.state, params)
        send = gen.send
        reply = None
        while True:
            action = send(reply)
            steps += 1
            if steps > max_steps:
                gen.close()
                raise ControllerFailure(step_limit_message(max_steps))
            reply = perform(episode, action, append)
    except StopIteration as stop:
        result.answer, result.reason, result.error = final_answer(stop.value)
    except Exception as exc:
        result.error, result.exception = error_text(exc, controller), exc
        if isinstance(exc, EngineFailure):
            result.exception = None
    finish_result(episode, result, steps)
    return log


def start_run(controller: Controller, state, params: dict):
    """``controller.run(state, **params)``, checked to be a generator."""
    gen = controller.run(state, **params)
    if not hasattr(gen, "send"):
        raise ControllerFailure(
            f"{type(controller).__name__}.run() returned {type(gen).__name__} "
            f"{gen!r:.60} instead of a generator: run() must yield actions (at least one "
            "`yield`) and return the answer"
        )
    return gen


def step_limit_message(max_steps: int) -> str:
    return (
        f"step limit exceeded: {max_steps} actions without an answer "
        "(does the controller loop forever?)"
    )


def final_answer(value) -> tuple[str | None, str, str | None]:
    """``(answer, reason, error)`` of what a controller returned."""
    reason = ""
    if isinstance(value, Answer):
        value, reason = value.value, value.reason
    if isinstance(value, str):
        return value, reason, None
    return (
        None,
        reason,
        f"controller returned {type(value).__name__} {value!r:.200}; it must return the "
        "answer as a str (or Answer(value, reason))",
    )


def error_text(exc: Exception, controller: Controller) -> str:
    """The ``result.error`` of an episode that ``exc`` ended."""
    if isinstance(exc, ActionError):
        return f"invalid action: {exc}"
    if isinstance(exc, ControllerFailure):
        return str(exc)
    if isinstance(exc, EngineFailure):
        return f"inference backend failed: {exc}"
    return _describe_exception(exc, controller)


def finish_result(episode, result: EpisodeResult, steps: int) -> None:
    """Copy an ended episode's accounting into ``result``."""
    result.tokens = episode.tokens
    result.probe_tokens = episode.probe_tokens
    if episode.cost is not None:  # priced environments (cross-model replay)
        result.cost = episode.cost
        result.model_tokens = dict(episode.model_tokens)
    result.opened = len(episode.live)
    result.steps = steps


def perform(episode, action, append):
    """Execute one action on ``episode`` after checking its arguments, log it with
    ``append`` and return what the controller's ``yield`` gets back."""
    kind = type(action)  # exact types: a subclass could answer differently each time
    if kind is Continue:
        ids = tuple(action.ids)
        k = action.steps
        if type(k) is not int:
            if not isinstance(k, Sequence) or isinstance(k, str):
                requested_intervals(ids, k)  # raises the clear error
            k = tuple(k)
        probe = flag(action.probe)
        episode.extend(ids, k, probe)
        append((CONTINUE, ids, k, probe, episode.tokens))
        return None
    if kind is Branch:
        model, probe = model_name(action.model), flag(action.probe)
        ids = tuple(episode.open(action.k, model))
        episode.extend(ids, 1, probe)
        append((BRANCH, ids, model, probe, episode.tokens))
        return list(ids)
    if kind is Read:
        model = model_name(action.model)
        ids = tuple(episode.read(action.k, model))
        append((READ, ids, model, False, episode.tokens))
        return list(ids)
    if kind is Probe:
        episode.probe(ids := tuple(action.ids))
        append((PROBE, ids, 0, True, episode.tokens))
        return None
    if kind is Prune:
        episode.prune(ids := tuple(action.ids))
        append((PRUNE, ids, 0, False, episode.tokens))
        return None
    if kind is Note:
        append((NOTE, (), str(action.text), False, episode.tokens))
        return None
    if kind is ChargeAgain:
        episode.charge_again(i := action.branch)
        append((CHARGE_AGAIN, (i,), 0, False, episode.tokens))
        return None
    if kind is Generate:
        model = model_name(action.model)
        reply = episode.generate(action.prompt, model, action.max_tokens)
        append((GENERATE, (), model, False, episode.tokens))
        return reply
    raise ActionError(
        f"controller yielded {action!r:.200}; expected an action such as Branch, "
        "Continue, Probe, Prune, Read, Note or Generate (from autotts, not a subclass)"
    )


def _describe_exception(exc: Exception, controller: Controller) -> str:
    """Where an exception came from: the controller's own code (its innermost frame there:
    file, line, function, source line) or the engine, given malformed action arguments."""
    mine = _controller_frames(exc, controller)
    what = f"{type(exc).__name__}: {exc}"
    if not mine:
        return f"invalid action arguments: {what}"
    frame = mine[-1]
    code = f": `{frame.line.strip()}`" if frame.line else ""
    return f"controller bug: {what} (at {frame.filename}:{frame.lineno} in {frame.name}{code})"


def _controller_frames(exc: Exception, controller: Controller) -> list:
    """The traceback frames of ``exc`` outside the engine: the controller's own file first
    (its module, or where its ``run`` is defined), else any code it called."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(ENGINE_DIR)
    ]
    module = sys.modules.get(type(controller).__module__)
    run = getattr(type(controller).run, "__code__", None)
    files = {f for f in (getattr(module, "__file__", None), run and run.co_filename) if f}
    return [f for f in frames if f.filename in files] or frames


# the package's own files (autotts/): frames there are the engine's, not the controller's
ENGINE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _rebuild_trace(source: tuple, actions: list[tuple]) -> list[tuple]:
    """Replay an action log on a fresh episode and record what each action revealed (the log
    keeps a ``Branch``/``Read``'s model where the step count of a ``Continue`` goes)."""
    episode = source[0](*source[1:])
    state = episode.state
    finished, finals, answer = state.finished, state.finals, state.answer
    trace = []
    for event, ids, k, probe, tokens in actions:
        n_finals = len(finals)
        if event == CONTINUE:
            episode.extend(ids, k, probe)
        elif event == BRANCH:
            ids = tuple(episode.open(len(ids), k))
            episode.extend(ids, 1, probe)
        elif event == READ:
            ids = tuple(episode.read(len(ids), k))
            trace.append((READ, ids, tuple(finals[n_finals:]), ids, tokens))
            continue
        elif event == PROBE:
            episode.probe(ids)
        elif event == PRUNE:
            episode.prune(ids)
        elif event == CHARGE_AGAIN:
            episode.charge_again(ids[0])
            trace.append((CHARGE_AGAIN, ids, (), (), tokens))
            continue
        else:
            trace.append((NOTE, (), (k,), (), tokens))
            continue
        done = tuple(i for i in ids if finished[i]) if len(finals) != n_finals else ()
        revealed = () if event == PRUNE else tuple(map(answer.__getitem__, ids))
        trace.append((event, ids, revealed, done, tokens))
    return trace
