"""The sandbox protocol: the worker plays only the controller; the trusted parent is the
engine. Nothing of a store crosses to the worker except what an action reveals.

Every message is a *frame*: a 4-byte big-endian length, then the payload. The parent sends
the job (pickle) and one observation frame per round (marshal): both are trusted → untrusted.
The worker sends a header frame and then one round frame per round, in a small binary format
the parent reads strictly (:func:`decode_round`), never with pickle or marshal.

- Header: ``P`` + JSON ``[params, ...]`` (the ``run`` parameters of each configuration,
  display only) or ``E`` + a JSON string (the candidate does not load; nothing follows).
- Round: one *entry* per episode in flight of the group whose turn it is, in order. The
  episodes in flight form two groups of at most ``in_flight`` whose rounds take turns (the
  worker computes one group's actions while the parent serves the other's); before its round
  a group takes the next units of the job, in job order, for the episodes that ended, and
  both sides do the same, so they always agree on which episode an entry belongs to. An entry
  is the episode's next action, its answer, or its failure; integers are little-endian
  (``q``: signed 64-bit, ``I``: unsigned 32-bit), texts are ``I`` + UTF-8, a model is a text
  or ``I`` = 0xFFFFFFFF for none, ``ids`` are ``I`` + that many ``q``:

  =====================================  ==========================================
  ``c`` probe:B steps:q ids              ``Continue`` with one step count
  ``C`` probe:B ids steps:(q per id)     ``Continue`` with one step count per id
  ``b`` probe:B k:q model                ``Branch``
  ``r`` k:q model                        ``Read``
  ``p`` ids / ``x`` ids                  ``Probe`` / ``Prune``
  ``a`` i:q                              ``ChargeAgain``
  ``n`` text                             ``Note``
  ``g`` prompt:text model max_tokens:q   ``Generate``
  ``=`` answer:text reason:text          the episode's answer (it ends)
  ``!`` message:text                     the controller failed (it ends)
  ``?`` message:text                     it yielded an action that cannot be sent (a
                                         step, as in process; it ends)
  =====================================  ==========================================

- Observation: one element per entry of the round: ``0`` for an episode that ended by its
  own entry, ``"!"`` for one the engine ended (an action it refused, the step limit), else
  the action's effect on the :class:`~autotts.core.contract.EpisodeState`, in one of two forms:

  - ``(reply, tokens, probe_tokens, cost, answers, ends)`` for ``Continue``, ``Branch``,
    ``Probe``, ``Prune``, ``ChargeAgain`` and ``Note`` on replay engines (and ``Read`` on the
    parent's compiled engine): ``answers`` holds,
    for each id the action named (the new ones for ``Branch``), the answer it revealed
    (``None`` where none; the whole field ``None`` when nothing was revealed), and ``ends``
    a ``(position, depth, final)`` for each branch that finished;
  - ``[reply, tokens, probe_tokens, cost, changes, finals]`` for everything else: one
    ``[i, depth, finished, pruned, revealed]`` per branch the action touched (``revealed``:
    the answers newly appended to ``history[i]``; a sixth element maps signal names to the
    values newly revealed), then the new final answers.

  Either is exactly what the trusted engine writes into its own state, so a sandboxed
  controller observes what an in-process one does, and nothing else.

The parent (:mod:`.serving`) executes each decoded action (:func:`decode_round`) on its own
episode engine through :func:`autotts.core.engine.perform` (which refuses invalid actions exactly
as in process) and computes the observation (:mod:`.observations`); the worker
(:mod:`.remote`) encodes its controller's actions (:func:`encode_action`) and applies
observations to the mirror state its controller reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from array import array

from ..core.arguments import (
    MAX_STEPS_PER_ACTION,
    check_ids,
    flag,
    model_name,
    requested_intervals,
)
from ..core.contract import (
    ActionError,
    Branch,
    ChargeAgain,
    Continue,
    Generate,
    Note,
    Probe,
    Prune,
    Read,
)

MAX_ANSWER_CHARS = 1000
MAX_TEXT_CHARS = 1000  # error, reason and note texts
MAX_PROMPT_CHARS = 200_000
MAX_FRAME_BYTES = 64 << 20
MAX_HEADER_BYTES = 256 << 10
# Exit codes of a worker's supervisor (the runner cannot forge them).
EXIT_FAILED = 1  # the runner exited with an error
EXIT_CPU = 120  # the runner used up its CPU time
EXIT_ISOLATION = 123  # isolation could not be set up (before any untrusted code ran)
ENDED_BY_ENGINE = "!"
MAX_IDS = 4096  # branch ids one action may name (repeats included)
NO_MODEL = 0xFFFFFFFF
U32, I64 = struct.Struct("<I"), struct.Struct("<q")
_INT64 = 1 << 63


class ProtocolError(ValueError):
    """A frame that does not fit the protocol: the worker is not an honest one."""


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte length in front."""
    return len(payload).to_bytes(4, "big") + payload


# --- worker side -----------------------------------------------------------------------


def _q(value, what: str) -> bytes:
    if type(value) is not int:
        raise ActionError(f"{what} must be an int, got {value!r:.60}")
    if not -_INT64 <= value < _INT64:
        raise ActionError(f"{what} {value} is out of range")
    return I64.pack(value)


def encode_ids_python(ids) -> bytes:
    """A round entry's id list (the specification of the compiled ``encode_ids``)."""
    ids = list(ids)
    if not all(type(i) is int for i in ids):
        raise TypeError("branch ids must be ints")
    return U32.pack(len(ids)) + array("q", ids).tobytes()


def _ids(values) -> bytes:
    ids = values if type(values) is list or type(values) is tuple else list(values)
    if len(ids) > MAX_IDS:
        raise ActionError(f"an action names at most {MAX_IDS} branch ids, not {len(ids):,}")
    try:
        return encode_ids(ids)
    except TypeError:
        check_ids(ids)  # raises the engine's message
        raise
    except OverflowError:
        raise ActionError(f"a branch id is out of range: {max(ids, key=abs)}") from None


def _text(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return U32.pack(len(data)) + data


def _model(value) -> bytes:
    return U32.pack(NO_MODEL) if model_name(value) is None else _text(value)


def encode_action(action) -> tuple[bytes, tuple, int | tuple]:
    """The round entry of an action, with the argument checks the engine makes on exact types
    (so that what crosses is what the controller meant), and the ids and steps it names (what
    :func:`apply_observation` needs); raises :class:`~autotts.core.contract.ActionError` like the
    engine would."""
    kind = type(action)
    if kind is Continue:
        ids, steps = action.ids, action.steps
        ids = tuple(ids) if type(ids) is not tuple else ids
        probe = b"\x01" if flag(action.probe) else b"\x00"
        if type(steps) is int and 1 <= steps <= MAX_STEPS_PER_ACTION:
            return b"c" + probe + I64.pack(steps) + _ids(ids), ids, steps
        requested_intervals(ids, steps)
        steps = tuple(steps)
        return b"C" + probe + _ids(ids) + array("q", steps).tobytes(), ids, steps
    if kind is Branch:
        probe = b"\x01" if flag(action.probe) else b"\x00"
        return b"b" + probe + _q(action.k, "branch count") + _model(action.model), (), 1
    if kind is Read:
        return b"r" + _q(action.k, "branch count") + _model(action.model), (), 0
    if kind is Probe or kind is Prune:
        ids = tuple(action.ids)
        return (b"p" if kind is Probe else b"x") + _ids(ids), ids, 0
    if kind is ChargeAgain:
        i = action.branch
        if type(i) is not int or not 0 <= i < _INT64:
            raise ActionError(
                f"ChargeAgain({i!r:.60}): only a finished branch can be charged again"
            )
        return b"a" + I64.pack(i), (), 0
    if kind is Note:
        return b"n" + _text(str(action.text)[:MAX_TEXT_CHARS]), (), 0
    if kind is Generate:
        if type(action.prompt) is not str or len(action.prompt) > MAX_PROMPT_CHARS:
            raise ActionError(f"Generate needs a prompt str of at most {MAX_PROMPT_CHARS} chars")
        entry = b"g" + _text(action.prompt) + _model(action.model)
        return entry + _q(action.max_tokens, "max_tokens"), (), 0
    raise ActionError(
        f"controller yielded {action!r:.200}; expected an action such as Branch, "
        "Continue, Probe, Prune, Read, Note or Generate (from autotts, not a subclass)"
    )


def answer_entry(answer: str, reason: str) -> bytes:
    if len(answer) > MAX_ANSWER_CHARS:
        return failure_entry(f"the answer is longer than {MAX_ANSWER_CHARS} characters")
    return b"=" + _text(answer) + _text(reason[:MAX_TEXT_CHARS])


def failure_entry(message: str, refused: bool = False) -> bytes:
    """The controller failed (``!``), or yielded an action refused before it crossed
    (``?``: that action counts as a step, as in process)."""
    return (b"?" if refused else b"!") + _text(message[:MAX_TEXT_CHARS])


# --- parent side -----------------------------------------------------------------------


class _Reader:
    """Strict reading of a round frame."""

    __slots__ = ("data", "at")

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n: int) -> memoryview:
        start, self.at = self.at, self.at + n
        if self.at > len(self.data) or n < 0:
            raise ProtocolError("an entry runs past the end of the round")
        return self.data[start : self.at]

    def byte(self) -> int:
        return self.take(1)[0]

    def flag(self) -> bool:
        value = self.byte()
        if value > 1:
            raise ProtocolError("a probe flag must be 0 or 1")
        return value == 1

    def q(self) -> int:
        return I64.unpack(self.take(8))[0]

    def count(self) -> int:
        return U32.unpack(self.take(4))[0]

    def ids(self) -> tuple:
        n = self.count()
        if n > MAX_IDS:
            raise ProtocolError(f"an action names at most {MAX_IDS} branch ids")
        return tuple(self.take(8 * n).cast("q"))

    def text(self, limit: int, what: str) -> str:
        n = self.count()
        if n > 4 * limit:
            raise ProtocolError(f"{what} is longer than {limit} characters")
        try:
            text = str(self.take(n), "utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} is not UTF-8") from None
        if len(text) > limit:
            raise ProtocolError(f"{what} is longer than {limit} characters")
        return text

    def model(self):
        size = U32.unpack(self.take(4))[0]
        if size == NO_MODEL:
            return None
        self.at -= 4
        return self.text(200, "a model name")


def decode_round(data: bytes, n: int) -> list:
    """The ``n`` entries of a round frame (see :func:`decode_round_python`), by the compiled
    decoder where it is built and the frame is well formed."""
    if _compiled_decode is not None:
        entries = _compiled_decode(
            data, n, Continue, Branch, Read, Probe, Prune, ChargeAgain, Note, Generate,
            MAX_ANSWER_CHARS, MAX_TEXT_CHARS, MAX_PROMPT_CHARS, MAX_IDS,
        )  # fmt: skip
        if entries is not None:
            return entries
    return decode_round_python(data, n)


def decode_round_python(data: bytes, n: int) -> list:
    """The ``n`` entries of a round frame, as action objects or ``("=", answer, reason)`` /
    ``("!", message)``; raises :class:`ProtocolError` for anything an honest worker does not
    send."""
    reader = _Reader(memoryview(data))
    out = []
    for _ in range(n):
        tag = reader.byte()
        if tag == 0x63:  # c
            probe, steps = reader.flag(), reader.q()
            out.append(Continue(reader.ids(), steps, probe))
        elif tag == 0x43:  # C
            probe, ids = reader.flag(), reader.ids()
            out.append(Continue(ids, tuple(reader.take(8 * len(ids)).cast("q")), probe))
        elif tag == 0x62:  # b
            probe, k = reader.flag(), reader.q()
            out.append(Branch(k, probe, reader.model()))
        elif tag == 0x72:  # r
            out.append(Read(reader.q(), reader.model()))
        elif tag == 0x70:  # p
            out.append(Probe(reader.ids()))
        elif tag == 0x78:  # x
            out.append(Prune(reader.ids()))
        elif tag == 0x61:  # a
            out.append(ChargeAgain(reader.q()))
        elif tag == 0x6E:  # n
            out.append(Note(reader.text(MAX_TEXT_CHARS, "a note")))
        elif tag == 0x67:  # g
            prompt = reader.text(MAX_PROMPT_CHARS, "a prompt")
            out.append(Generate(prompt, reader.model(), reader.q()))
        elif tag == 0x3D:  # =
            answer = reader.text(MAX_ANSWER_CHARS, "an answer")
            out.append(("=", answer, reader.text(MAX_TEXT_CHARS, "a reason")))
        elif tag == 0x21 or tag == 0x3F:  # ! or ?
            out.append((chr(tag), reader.text(MAX_TEXT_CHARS, "an error")))
        else:
            raise ProtocolError(f"unknown entry tag {tag}")
    if reader.at != len(data):
        raise ProtocolError("bytes after the last entry of a round")
    return out


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


# The compiled hot paths (autotts/sandbox/_wire.c); the functions above are their
# specification, used where the extension is not built (or AUTOTTS_PURE_PYTHON=1).
encode_ids, _compiled_decode = encode_ids_python, None
if not os.environ.get("AUTOTTS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        from ._wire import decode_round as _compiled_decode
        from ._wire import encode_ids
