"""The worker side of the sandbox protocol: a controller's episodes played against the
parent's engine. The worker holds no store data: each episode's
:class:`~autotts.core.contract.EpisodeState` starts from its public header (question text, Δ,
branch limit, models, prices, signal names) and grows only by the observations the parent
sends back for the actions taken (:mod:`.protocol`).

Many episodes run in lockstep: every round each episode in flight yields its next action,
the round crosses to the parent in one frame and the observations come back in one frame
(the idea of Gymnasium's vector environments and of :mod:`autotts.live.lockstep`). A
group's round runs in one compiled call (``_mirror.step_group``) where the extension is built;
:func:`step_group_python` and :func:`_step` are its specification.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from collections import deque
from functools import partial

from ..core.arguments import STATE_MODIFIED
from ..core.contract import Branch, Continue, EpisodeState, Probe, Prune, Read
from ..core.engine import error_text, final_answer, start_run
from .observations import apply_observation
from .protocol import (
    ENDED_BY_ENGINE,
    MAX_IDS,
    answer_entry,
    encode_action,
    failure_entry,
    frame,
)

MODIFIED = f"invalid action: {STATE_MODIFIED}"


class Channel:
    """Frames over a pair of file descriptors (blocking; every read is of an exact length)."""

    def __init__(self, read_fd: int = 0, write_fd: int = 1):
        self.read_fd, self.write_fd = read_fd, write_fd

    def send(self, payload: bytes) -> None:
        data = memoryview(frame(payload))
        while data:
            data = data[os.write(self.write_fd, data) :]

    def _exactly(self, n: int) -> bytearray:
        buffer = bytearray(n)
        view, got = memoryview(buffer), 0
        while got < n:
            read = os.readv(self.read_fd, [view[got:]])
            if read == 0:
                raise EOFError("the parent closed the channel")
            got += read
        return buffer

    def receive(self) -> bytearray:
        return self._exactly(int.from_bytes(self._exactly(4), "big"))


def header_of(state: EpisodeState) -> tuple:
    """The public start of an episode's state, as the worker rebuilds it."""
    return (
        state.question,
        state.delta,
        state.max_branches,
        tuple(state.models),
        state.cost,
        dict(state.cost_per_token) if state.cost_per_token is not None else None,
        tuple(state.signals),
    )


def state_from(header: tuple) -> EpisodeState:
    question, delta, max_branches, models, cost, prices, signals = header
    state = EpisodeState(question, delta, max_branches, models)
    state.cost, state.cost_per_token = cost, (dict(prices) if prices is not None else None)
    state.signals = {name: [] for name in signals}
    return state


RETURNED, RAISED = 1, 2  # how a resumed generator ended (0: it yielded an action)


def _advance(controller, gen, reply) -> tuple:
    """Resume ``gen`` with ``reply``: the entry of its next action (with its ids and steps),
    answer or failure."""
    try:
        action = gen.send(reply)
    except StopIteration as stop:
        return _outcome(controller, gen, RETURNED, stop.value)
    except Exception as exc:
        return _outcome(controller, gen, RAISED, exc)
    return _outcome(controller, gen, 0, action)


def _outcome(controller, gen, status: int, value) -> tuple:
    """The entry of a resumed generator that yielded ``value`` (``status`` 0), returned it
    (``RETURNED``) or raised it (``RAISED``)."""
    if status == RETURNED:
        answer, reason, error = final_answer(value)
        if error is not None:
            return failure_entry(error), (), 0
        return answer_entry(answer, reason if type(reason) is str else str(reason)), (), 0
    if status == RAISED:
        _close(gen)
        return failure_entry(error_text(value, controller)), (), 0
    try:
        return encode_action(value)
    except Exception as exc:  # refused before it crosses, as the engine would refuse it
        _close(gen)
        return failure_entry(error_text(exc, controller), refused=True), (), 0


def _step(controller, slot: list, observation) -> None:
    """One episode's part of a round: write its observation into the mirror and put the
    entry of what the controller does next into ``slot`` (``[generator, state, entry]``)."""
    gen, state, entry = slot
    try:
        reply = apply_observation(state, *entry, observation)
    except (IndexError, ValueError, TypeError, KeyError, AttributeError):
        _close(gen)
        slot[2] = (failure_entry(MODIFIED), (), 0)
    else:
        slot[2] = _advance(controller, gen, reply)


def step_group_python(slots: list, observations: list, step) -> list:
    """One round of a group: each slot's :func:`_step`; the slots whose episodes go on (the
    specification of the compiled ``step_group``)."""
    kept = []
    for slot, observation in zip(slots, observations, strict=True):
        if observation == 0:
            continue
        if observation == ENDED_BY_ENGINE:
            _close(slot[0])
            continue
        step(slot, observation)
        kept.append(slot)
    return kept


def _close(gen) -> None:
    with contextlib.suppress(BaseException):
        gen.close()


def play_remote(
    controller, params: list, headers: list, units: list, in_flight: int, channel, groups: int = 2
):
    """Play ``units`` (``(configuration index, header index)`` each, in job order) over
    ``channel`` to the parent's engine, in ``groups`` groups of at most ``in_flight`` episodes
    each. The groups' rounds take turns, so that the worker computes one while the parent
    serves another; a group takes the next units of the job as its episodes end, right before
    its round (the parent mirrors it: :class:`~autotts.sandbox.serving.EpisodeServer`)."""
    upcoming = iter(units)
    slots: list[list[list]] = [[] for _ in range(groups)]  # [generator, state, entry] each
    turns: deque[int] = deque()

    def send(group: int) -> None:
        mine = slots[group]
        for config, header in upcoming if len(mine) < in_flight else ():
            state = state_from(headers[header])
            try:
                gen = start_run(controller, state, params[config])
                entry = _advance(controller, gen, None)
            except Exception as exc:
                gen, entry = None, (failure_entry(error_text(exc, controller)), (), 0)
            mine.append([gen, state, entry])
            if len(mine) >= in_flight:
                break
        if mine:
            channel.send(b"".join([slot[2][0] for slot in mine]))
            turns.append(group)

    for group in range(groups):
        send(group)
    step = partial(_step, controller)
    if step_group is None:
        play_round = partial(step_group_python, step=step)
    else:
        fixed = (
            step,
            partial(_outcome, controller),
            (failure_entry(MODIFIED), (), 0),
            (Continue, Branch, Read, Probe, Prune),
            MAX_IDS,
        )

        def play_round(slots: list, observations: list) -> list:
            return step_group(slots, observations, *fixed)

    while turns:
        group = turns.popleft()
        slots[group] = play_round(slots[group], marshal.loads(channel.receive()))
        send(group)


# The compiled round loop (autotts/sandbox/_mirror.c); the functions above are its
# specification, used where the extension is not built (or AUTOTTS_PURE_PYTHON=1).
step_group = None
if not os.environ.get("AUTOTTS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        from ._mirror import step_group
