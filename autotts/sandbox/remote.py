"""The worker side of the sandbox protocol: a controller's episodes played against the
parent's engine. The worker holds no store data: each episode's
:class:`~autotts.contract.EpisodeState` starts from its public header (question text, Δ,
branch limit, models, prices, signal names) and grows only by the observations the parent
sends back for the actions taken (:mod:`.protocol`).

Many episodes run in lockstep: every round each episode in flight yields its next action,
the round crosses to the parent in one frame and the observations come back in one frame
(the idea of Gymnasium's vector environments and of :mod:`autotts.live.lockstep`).
"""

from __future__ import annotations

import contextlib
import marshal
import os
from collections import deque

from ..arguments import STATE_MODIFIED
from ..contract import EpisodeState
from ..engine import error_text, final_answer, start_run
from .observations import apply_observation
from .protocol import ENDED_BY_ENGINE, answer_entry, encode_action, failure_entry, frame

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


def _advance(controller, gen, reply) -> tuple:
    """Resume ``gen`` with ``reply``: the entry of its next action (with its ids and steps),
    answer or failure."""
    try:
        action = gen.send(reply)
    except StopIteration as stop:
        answer, reason, error = final_answer(stop.value)
        if error is not None:
            return failure_entry(error), (), 0
        return answer_entry(answer, reason if type(reason) is str else str(reason)), (), 0
    except Exception as exc:
        _close(gen)
        return failure_entry(error_text(exc, controller)), (), 0
    try:
        return encode_action(action)
    except Exception as exc:  # refused before it crosses, as the engine would refuse it
        _close(gen)
        return failure_entry(error_text(exc, controller), refused=True), (), 0


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
    while turns:
        group = turns.popleft()
        observations = marshal.loads(channel.receive())
        kept = []
        for slot, observation in zip(slots[group], observations, strict=True):
            gen, state, entry = slot
            if observation == 0:
                continue
            if observation == ENDED_BY_ENGINE:
                _close(gen)
                continue
            try:
                reply = apply_observation(state, *entry, observation)
            except (IndexError, ValueError, TypeError, KeyError, AttributeError):
                _close(gen)
                slot[2] = (failure_entry(MODIFIED), (), 0)
            else:
                slot[2] = _advance(controller, gen, reply)
            kept.append(slot)
        slots[group] = kept
        send(group)
