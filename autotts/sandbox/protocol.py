"""The sandbox reply: what a worker writes, and how the parent reads it without trusting it.

A worker writes one line per message, ASCII only, never pickle:

- ``P<TAB>[params, ...]``: the ``run`` parameters of each configuration (display only);
- ``E<TAB>"message"``: the candidate could not be loaded (nothing else follows);
- ``<n><TAB>[answer, error, reason, actions]``: unit ``n`` of the worker's job, in job order.

``actions`` is the episode's action log, one list per executed action: ``["c", ids, steps,
probe]`` (Continue), ``["b", k, model, probe]`` (Branch), ``["r", k, model]`` (Read),
``["p", ids]`` (Probe), ``["x", ids]`` (Prune), ``["n", text]`` (Note); ``ids`` is a hex
string, two digits per branch id (four where an episode can open more than 256 branches).

The parent (:func:`decode_unit`) accepts a line only if it fits the schema exactly (types,
lengths, finite numbers, small integers), then replays the actions on its own engine: the
tokens, the validity of every action and the revealed answers are its own, never the
worker's. An honest worker logs only the actions that executed, so an action that does not
replay marks the reply as forged.
"""

from __future__ import annotations

import json
from hashlib import blake2b

from ..replay import (
    BRANCH,
    CONTINUE,
    NOTE,
    PROBE,
    PRUNE,
    READ,
    EpisodeResult,
)

MAX_ANSWER_CHARS = 1000
MAX_TEXT_CHARS = 1000  # error, reason and note texts
MAX_LINE_BYTES = 8 << 20
MAX_HEADER_BYTES = 256 << 10
# Exit codes of a worker's supervisor (the runner cannot forge them).
EXIT_FAILED = 1  # the runner exited with an error
EXIT_CPU = 120  # the runner used up its CPU time
EXIT_IDLE = 121  # the runner stopped using CPU (sleeping or blocked) for too long
EXIT_ISOLATION = 123  # isolation could not be set up (before any untrusted code ran)
_CODES = {CONTINUE: "c", BRANCH: "b", READ: "r", PROBE: "p", PRUNE: "x", NOTE: "n"}


class ProtocolError(ValueError):
    """A reply line that does not fit the schema, or actions that do not replay."""


# --- worker side -----------------------------------------------------------------------


def _hex(ids, wide: bool) -> str:
    return b"".join(i.to_bytes(2, "big") for i in ids).hex() if wide else bytes(ids).hex()


def encode_unit(result: EpisodeResult, wide: bool) -> bytes:
    """The payload of a unit line for an episode played with ``record_trace=True``."""
    actions = []
    for event, ids, arg, probe, _tokens in result.actions or ():
        if event == CONTINUE:
            steps = arg if type(arg) is int else list(arg)
            actions.append(["c", _hex(ids, wide), steps, probe])
        elif event == BRANCH:
            actions.append(["b", len(ids), arg, probe])
        elif event == READ:
            actions.append(["r", len(ids), arg])
        elif event in (PROBE, PRUNE):
            actions.append([_CODES[event], _hex(ids, wide)])
        elif event == NOTE:
            actions.append(["n", str(arg)[:MAX_TEXT_CHARS]])
    answer, error = result.answer, result.error
    if error is None and len(answer) > MAX_ANSWER_CHARS:
        answer, error = None, f"the answer is longer than {MAX_ANSWER_CHARS} characters"
    if error is not None:
        answer, error = None, error[:MAX_TEXT_CHARS]
    payload = [answer, error, (result.reason or "")[:MAX_TEXT_CHARS], actions]
    return json.dumps(payload, separators=(",", ":")).encode("ascii")


# --- parent side -----------------------------------------------------------------------


def _reject_constant(name: str):
    raise ProtocolError(f"non-finite number {name}")


def _small_int(text: str) -> int:
    if len(text) > 12:
        raise ProtocolError(f"integer with {len(text)} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ProtocolError(f"non-finite number {text[:20]}")
    return value


def strict_json(data: bytes):
    """Parse JSON refusing NaN/Infinity, overflowing floats and integers over 12 digits."""
    try:
        return json.loads(
            data,
            parse_constant=_reject_constant,
            parse_int=_small_int,
            parse_float=_finite_float,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # malformed, too deep, not UTF-8 ...
        raise ProtocolError(f"unreadable JSON ({type(exc).__name__})") from None


def payload_digest(payload: bytes) -> bytes:
    """What the determinism check compares between two runs of the same unit."""
    return blake2b(payload, digest_size=16).digest()


def _text(value, what: str, limit: int) -> str:
    if type(value) is not str or len(value) > limit:
        raise ProtocolError(f"{what} must be a string of at most {limit} characters")
    return value


def _ids(value, wide: bool) -> tuple[int, ...]:
    if type(value) is not str:
        raise ProtocolError("branch ids must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ProtocolError("branch ids must be a hex string") from None
    if 2 * len(raw) != len(value):  # fromhex skips whitespace; the wire has none
        raise ProtocolError("branch ids must be a hex string without spaces")
    if not wide:
        return tuple(raw)
    if len(raw) % 2:
        raise ProtocolError("branch ids must have four hex digits each")
    return tuple(int.from_bytes(raw[j : j + 2], "big") for j in range(0, len(raw), 2))


def _flag(value) -> bool:
    if type(value) is not bool:
        raise ProtocolError("probe must be true or false")
    return value


def _model(value):
    if value is not None and (type(value) is not str or len(value) > 200):
        raise ProtocolError("model must be null or a short string")
    return value


def _replay(episode, actions, wide: bool, keep_log: bool) -> list | None:
    """Execute the decoded actions on ``episode`` (the parent's engine)."""
    log: list | None = [] if keep_log else None
    for position, action in enumerate(actions):
        if type(action) is not list or not action:
            raise ProtocolError("each action must be a non-empty list")
        code, args = action[0], action[1:]
        try:
            if code == "c" and len(args) == 3:
                ids, steps, probe = _ids(args[0], wide), args[1], _flag(args[2])
                if type(steps) is list:
                    steps = tuple(steps)
                episode.extend(ids, steps, probe)
                entry = (CONTINUE, ids, steps, probe)
            elif code == "b" and len(args) == 3:
                model, probe = _model(args[1]), _flag(args[2])
                ids = tuple(episode.open(args[0], model))
                episode.extend(ids, 1, probe)
                entry = (BRANCH, ids, model, probe)
            elif code == "r" and len(args) == 2:
                model = _model(args[1])
                ids = tuple(episode.read(args[0], model))
                entry = (READ, ids, model, False)
            elif code in ("p", "x") and len(args) == 1:
                ids = _ids(args[0], wide)
                if code == "p":
                    episode.probe(ids)
                    entry = (PROBE, ids, 0, True)
                else:
                    episode.prune(ids)
                    entry = (PRUNE, ids, 0, False)
            elif code == "n" and len(args) == 1:
                entry = (NOTE, (), _text(args[0], "a note", MAX_TEXT_CHARS), False)
            else:
                raise ProtocolError(f"unknown action {str(code)[:10]!r} with {len(args)} fields")
        except ProtocolError:
            raise
        except Exception as exc:  # the engine refused it: an honest log never holds that
            raise ProtocolError(
                f"action {position} ({str(code)[:10]}) does not replay: {type(exc).__name__}: {exc}"
            ) from None
        if log is not None:
            log.append((*entry, episode.tokens))
    return log


def decode_unit(
    payload: bytes,
    source: tuple,
    question: int,
    seed: int,
    *,
    max_steps: int,
    wide: bool,
    keep_log: bool,
) -> EpisodeResult:
    """Check one unit's payload and recompute its episode from the actions on ``source``
    (:meth:`~autotts.replay.EpisodeRunner.episode_source`); raises :class:`ProtocolError`."""
    fields = strict_json(payload)
    if type(fields) is not list or len(fields) != 4:
        raise ProtocolError("a unit must be [answer, error, reason, actions]")
    answer, error, reason, actions = fields
    if error is None:
        answer = _text(answer, "the answer", MAX_ANSWER_CHARS)
    elif answer is not None:
        raise ProtocolError("a failed episode has no answer")
    else:
        error = _text(error, "the error", MAX_TEXT_CHARS)
    reason = _text(reason, "the reason", MAX_TEXT_CHARS)
    if type(actions) is not list or len(actions) > max_steps:
        raise ProtocolError(f"actions must be a list of at most {max_steps} actions")
    episode = source[0](*source[1:])
    log = _replay(episode, actions, wide, keep_log)
    result = EpisodeResult(
        question,
        seed,
        answer,
        episode.tokens,
        episode.probe_tokens,
        len(episode.live),
        len(actions),
        reason,
        error,
    )
    if keep_log:
        result.actions, result.source = log, source
    return result
