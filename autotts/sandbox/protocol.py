"""The sandbox reply: what a worker writes, and how the parent reads it without trusting it.

A worker writes one line per message, ASCII only, never pickle:

- ``P<TAB>[params, ...]``: the ``run`` parameters of each configuration (display only);
- ``E<TAB>"message"``: the candidate could not be loaded (nothing else follows);
- ``<n><TAB><answer><TAB><error><TAB><reason><TAB><actions>``: unit ``n`` of the worker's
  job, in job order; ``answer``, ``error`` and ``reason`` are UTF-8 in lowercase hex, ``-``
  for none (an episode has an answer or an error, never both).

``actions`` is the episode's action log as one ASCII string, one entry per executed action,
entries separated by ``;``:

=====================  ==================================================================
``c<P><S>:<ids>``      Continue; ``P`` is ``1``/``0`` (probe), ``S`` the steps: a decimal,
                       or ``[s1,s2,...]`` one per id
``b<P><K>``            Branch of ``K`` branches (``B<P><K>:<model>`` names the model)
``r<K>``               Read of ``K`` branches (``R<K>:<model>`` names the model)
``p:<ids>``            Probe
``x:<ids>``            Prune
``a:<id>``             ChargeAgain (the AutoTTS-API adapter's, replayed through Python)
``n<text>``            Note
=====================  ==================================================================

``ids`` are lowercase hex, two digits per branch id (four where an episode can open more
than 256 branches); ``model`` and ``text`` are the UTF-8 bytes in lowercase hex; decimals
have at most 7 digits. The compiled loop (``autotts/_replay_loop.c``) encodes and replays
this string; the Python functions here are its specification.

The parent (:class:`UnitDecoder`) accepts a line only if it fits this schema exactly (fields,
hex digits, UTF-8, lengths; the header is strict JSON: finite numbers, small integers), then
replays the actions on its own engine: the tokens, the validity of every action and the
revealed answers are its own, never the worker's. An honest worker logs only the actions that
executed, so an action that does not replay marks the reply as forged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from hashlib import blake2b

from ..engine import (
    BRANCH,
    CHARGE_AGAIN,
    CONTINUE,
    NOTE,
    PROBE,
    PRUNE,
    READ,
    EpisodeResult,
)

# The compiled encoder and replayer (autotts/_replay_loop.c); the functions below are their
# specification, used where the extension is not built (or AUTOTTS_PURE_PYTHON=1).
_compiled_encode = _compiled_decode = None
if not os.environ.get("AUTOTTS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        from .._replay_loop import decode_unit as _compiled_decode
        from .._replay_loop import encode_log as _compiled_encode

MAX_ANSWER_CHARS = 1000
MAX_TEXT_CHARS = 1000  # error, reason and note texts
MAX_LINE_BYTES = 8 << 20
MAX_HEADER_BYTES = 256 << 10
# Exit codes of a worker's supervisor (the runner cannot forge them).
EXIT_FAILED = 1  # the runner exited with an error
EXIT_CPU = 120  # the runner used up its CPU time
EXIT_IDLE = 121  # the runner stopped using CPU (sleeping or blocked) for too long
EXIT_ISOLATION = 123  # isolation could not be set up (before any untrusted code ran)
_CODES = {PROBE: "p", PRUNE: "x", CHARGE_AGAIN: "a"}  # the ones written code:ids
_EVENTS = {code: event for event, code in _CODES.items()}


class ProtocolError(ValueError):
    """A reply line that does not fit the schema, or actions that do not replay."""


# --- worker side -----------------------------------------------------------------------


def _hex(ids, wide: bool) -> str:
    return b"".join(i.to_bytes(2, "big") for i in ids).hex() if wide else bytes(ids).hex()


def encode_actions(log, wide: bool) -> str:
    """The action string of an action log (the specification of the compiled encoder)."""
    parts = []
    for event, ids, arg, probe, _tokens in log:
        flag = "1" if probe else "0"
        if event == CONTINUE:
            if type(arg) is int:
                steps = str(arg)
            else:  # one per id; with no ids, any steps mean the same
                steps = "[" + ",".join(map(str, arg)) + "]" if arg else "1"
            parts.append(f"c{flag}{steps}:{_hex(ids, wide)}")
        elif event in (BRANCH, READ):
            code = "b" if event == BRANCH else "r"
            head = f"{code}{flag}" if event == BRANCH else code
            if arg is None:
                parts.append(f"{head}{len(ids)}")
            else:
                parts.append(f"{head.upper()}{len(ids)}:{arg.encode().hex()}")
        elif event in _CODES:
            parts.append(f"{_CODES[event]}:{_hex(ids, wide)}")
        elif event == NOTE:
            parts.append("n" + str(arg)[:MAX_TEXT_CHARS].encode("utf-8", "replace").hex())
    return ";".join(parts)


def _hex_field(text: str | None) -> bytes:
    return b"-" if text is None else text.encode("utf-8", "replace").hex().encode("ascii")


def encode_unit(result: EpisodeResult, wide: bool) -> bytes:
    """The payload of a unit line (after ``<n><TAB>``) for an episode played with
    ``record_trace=True``."""
    log = result.actions or ()
    actions = _compiled_encode(log, wide) if _compiled_encode else None
    if actions is None:  # not built, or a note or a named model in the log
        actions = encode_actions(log, wide)
    answer, error = result.answer, result.error
    if error is None and len(answer) > MAX_ANSWER_CHARS:
        answer, error = None, f"the answer is longer than {MAX_ANSWER_CHARS} characters"
    if error is not None:
        answer, error = None, error[:MAX_TEXT_CHARS]
    reason = (result.reason or "")[:MAX_TEXT_CHARS]
    fields = (_hex_field(answer), _hex_field(error), _hex_field(reason), actions.encode("ascii"))
    return b"\t".join(fields)


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


_STRICT_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_small_int, parse_float=_finite_float
)


def strict_json(data: bytes):
    """Parse JSON refusing NaN/Infinity, overflowing floats and integers over 12 digits."""
    try:
        return _STRICT_DECODER.decode(data.decode("utf-8"))
    except ProtocolError:
        raise
    except Exception as exc:  # malformed, too deep, not UTF-8 ...
        raise ProtocolError(f"unreadable JSON ({type(exc).__name__})") from None


def payload_digest(payload: bytes) -> int | bytes:
    """What the determinism check compares between two runs of the same unit: Python's own
    hash of the bytes (SipHash keyed with this process's random secret, which a worker never
    sees), or a BLAKE2b digest where hash randomisation is off (``PYTHONHASHSEED=0``)."""
    if sys.flags.hash_randomization:
        return hash(payload)
    return blake2b(payload, digest_size=16).digest()


def _text(field: bytes, what: str, limit: int) -> str | None:
    """A hex field: ``-`` for none, else UTF-8 text of at most ``limit`` characters."""
    if field == b"-":
        return None
    if len(field) > 8 * limit:
        raise ProtocolError(f"{what} is longer than {limit} characters")
    try:
        raw = bytes.fromhex(field.decode("ascii"))
        if 2 * len(raw) != len(field):  # fromhex skips whitespace; the wire has none
            raise ValueError
        text = raw.decode("utf-8")
    except ValueError:  # UnicodeDecodeError included
        raise ProtocolError(f"{what} is not UTF-8 in hex") from None
    if len(text) > limit:
        raise ProtocolError(f"{what} is longer than {limit} characters")
    return text


_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_CONTINUE = re.compile(r"c([01])([0-9]{1,7}|\[[0-9]{1,7}(?:,[0-9]{1,7})*\]):((?:[0-9a-f]{2})*)")
_COUNT = re.compile(
    r"([bB])([01])([0-9]{1,7})(?::((?:[0-9a-f]{2})+))?|([rR])([0-9]{1,7})(?::((?:[0-9a-f]{2})+))?"
)


def _ids(text: str, wide: bool) -> tuple[int, ...]:
    raw = bytes.fromhex(text)
    if not wide:
        return tuple(raw)
    if len(raw) % 2:
        raise ProtocolError("branch ids must have four hex digits each")
    return tuple(int.from_bytes(raw[j : j + 2], "big") for j in range(0, len(raw), 2))


def _model(hex_text: str | None, upper: bool):
    if hex_text is None:
        if upper:
            raise ProtocolError("a named model is missing")
        return None
    if not upper or len(hex_text) > 400:
        raise ProtocolError("a model name where none belongs, or one too long")
    try:
        return bytes.fromhex(hex_text).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("a model name that is not UTF-8") from None


def _entry(text: str, wide: bool) -> tuple:
    """One entry of the action string as ``(event, ids_or_count, arg, probe)``."""
    code = text[:1]
    if code == "c":
        match = _CONTINUE.fullmatch(text)
        if match is None:
            raise ProtocolError("a malformed Continue entry")
        probe, steps, ids = match.groups()
        k = int(steps) if steps[0] != "[" else tuple(int(s) for s in steps[1:-1].split(","))
        return CONTINUE, _ids(ids, wide), k, probe == "1"
    if code and code in "bBrR":
        match = _COUNT.fullmatch(text)
        if match is None:
            raise ProtocolError("a malformed Branch/Read entry")
        b, probe, k, model, r, rk, rmodel = match.groups()
        if b:
            return BRANCH, int(k), _model(model, b == "B"), probe == "1"
        return READ, int(rk), _model(rmodel, r == "R"), False
    if code in _EVENTS and text[1:2] == ":" and _HEX.fullmatch(text, 2):
        return _EVENTS[code], _ids(text[2:], wide), 0, code == "p"
    if code == "n" and _HEX.fullmatch(text, 1) and len(text) <= 1 + 8 * MAX_TEXT_CHARS:
        try:
            return NOTE, (), bytes.fromhex(text[1:]).decode("utf-8"), False
        except UnicodeDecodeError:
            raise ProtocolError("a note that is not UTF-8") from None
    raise ProtocolError(f"unknown action entry {text[:12]!r}")


def replay_actions(episode, actions: str, wide: bool, keep_log: bool) -> tuple[int, list | None]:
    """Execute the action string on ``episode`` (the parent's engine); returns the number of
    actions and, with ``keep_log``, the action log. The specification of the compiled
    decoder's replay."""
    log: list | None = [] if keep_log else None
    entries = actions.split(";") if actions else []
    for position, text in enumerate(entries):
        event, ids, arg, probe = _entry(text, wide)
        try:
            if event == CONTINUE:
                episode.extend(ids, arg, probe)
            elif event == BRANCH:
                ids = tuple(episode.open(ids, arg))
                episode.extend(ids, 1, probe)
            elif event == READ:
                ids = tuple(episode.read(ids, arg))
            elif event == PROBE:
                episode.probe(ids)
            elif event == PRUNE:
                episode.prune(ids)
            elif event == CHARGE_AGAIN:
                if len(ids) != 1:
                    raise ValueError("ChargeAgain names one branch")
                episode.charge_again(ids[0])
        except Exception as exc:  # the engine refused it: an honest log never holds that
            raise ProtocolError(
                f"action {position} ({event}) does not replay: {type(exc).__name__}: {exc}"
            ) from None
        if log is not None:
            log.append((event, ids, arg, probe, episode.tokens))
    return len(entries), log


class UnitDecoder:
    """Reads the unit lines of one environment's episodes: ``decoder(payload, question, seed,
    keep_log)`` checks the payload (the line after its number) and recomputes the episode
    from its actions on ``replayer`` (a gold-free
    :class:`~autotts.replay.ReplayEnvironment`); raises :class:`ProtocolError`. The compiled
    decoder does it in one call where it can; anything it does not handle (malformed,
    notes, named models) goes through the Python specification,
    :func:`decode_unit_python`, which gives the exact error."""

    def __init__(self, replayer, *, max_steps: int, wide: bool):
        self.replayer, self.max_steps, self.wide = replayer, max_steps, wide

    def __call__(self, payload: bytes, question: int, seed: int, keep_log: bool) -> EpisodeResult:
        source = self.replayer.episode_source(question, seed)
        if _compiled_decode is not None:
            _, q, order, probe_cost, limit, _model = source
            lengths = order[1]
            n_branches = len(lengths) if limit is None else min(len(lengths), limit)
            fast = _compiled_decode(
                payload, lengths, order[2], q.delta, probe_cost, n_branches,
                self.wide, self.max_steps, MAX_ANSWER_CHARS, MAX_TEXT_CHARS, keep_log,
            )  # fmt: skip
            if fast is not None:
                answer, error, reason, tokens, probe_tokens, opened, steps, log = fast
                result = EpisodeResult(
                    question, seed, answer, tokens, probe_tokens, opened, steps, reason, error
                )
                if keep_log:
                    result.actions, result.source = log, source
                return result
        return decode_unit_python(
            payload, source, question, seed, max_steps=self.max_steps, wide=self.wide,
            keep_log=keep_log,
        )  # fmt: skip


def decode_unit_python(
    payload: bytes,
    source: tuple,
    question: int,
    seed: int,
    *,
    max_steps: int,
    wide: bool,
    keep_log: bool,
) -> EpisodeResult:
    """One unit's payload, checked and replayed on ``source``
    (:meth:`~autotts.engine.EpisodeRunner.episode_source`) in Python: the specification of
    the compiled decoder behind :class:`UnitDecoder`."""
    fields = payload.split(b"\t")
    if len(fields) != 4:
        raise ProtocolError(f"a unit has 4 fields after its number, not {len(fields)}")
    answer = _text(fields[0], "the answer", MAX_ANSWER_CHARS)
    error = _text(fields[1], "the error", MAX_TEXT_CHARS)
    reason = _text(fields[2], "the reason", MAX_TEXT_CHARS) or ""
    if (answer is None) == (error is None):
        raise ProtocolError("an episode has either an answer or an error")
    try:
        actions = fields[3].decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("actions must be ASCII") from None
    if actions.count(";") >= max_steps:
        raise ProtocolError(f"more than {max_steps} actions")
    episode = source[0](*source[1:])
    steps, log = replay_actions(episode, actions, wide, keep_log)
    if steps > max_steps:
        raise ProtocolError(f"more than {max_steps} actions")
    result = EpisodeResult(
        question,
        seed,
        answer,
        episode.tokens,
        episode.probe_tokens,
        len(episode.live),
        steps,
        reason,
        error,
    )
    if keep_log:
        result.actions, result.source = log, source
    return result
