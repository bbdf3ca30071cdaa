"""Sample dumps made into replay stores: ``autotts envs import``.

People already hold sampled reasoning traces; these readers turn them into width-only stores
(every branch whole: its token count and final answer, no probe answers yet) that width
controllers replay at once and ``autotts envs probe`` (:mod:`autotts.live.probing`) can
complete. Formats, one JSON object per line or one JSON array of them, gzipped where the name
ends in ``.gz`` (``--format``, or recognised from the first record):

- ``samples``: ``{"question", "gold_answer", "samples": [{"text" | "answer", "tokens"}]}``,
  our own format for pipelines that write JSONL;
- ``lm-eval``: lm-evaluation-harness ``--log_samples`` files (``samples_<task>_<date>.jsonl``:
  ``doc``, ``target``, ``arguments.gen_args_0.arg_0`` the prompt, ``resps`` one list of
  ``repeats`` texts per request; one line per filter, the first one per ``doc_id`` is read);
- ``openai``: completions or chat-completions responses with ``n`` choices
  (``choices[].text`` or ``choices[].message``, token counts from ``logprobs`` or
  ``token_ids`` where present);
- ``vllm``: vLLM ``RequestOutput`` objects as JSON (``prompt``, ``outputs[].text``,
  ``outputs[].token_ids``).

A line may carry ``question`` and ``gold_answer`` (or ``answer``) itself; otherwise a
question file gives them, line by line in order. Where only text is present the answer is its
last ``\\boxed{}`` (math-verify's extraction when there is none; ``ERR`` when that finds
nothing either); token counts missing from the dump come from a tokenizer. The texts go to a
sidecar ``<store>.texts.jsonl`` (one line per question: ``question``, ``prompt``, ``texts``,
and the exact ``token_ids``/``prompt_ids`` where the dump has them) for ``envs probe``. Every problem names the file, the line and the field.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import __version__
from ..errors import BadInput
from ..utils.atomic_files import atomic_write_text, json_records
from .answer_groups import UNPARSABLE, math_timeout
from .stores import meta_path

FORMATS = ("samples", "lm-eval", "openai", "vllm")
QUESTION_KEYS = ("question", "problem", "Problem", "Question", "input")
GOLD_KEYS = ("gold_answer", "answer", "Answer", "target")


class DumpError(BadInput):
    """A sample dump that cannot be imported; the message names file, line and field."""


@dataclass
class ImportedQuestion:
    """One question's samples, as read from a dump (``where``: file and line, for errors)."""

    where: str
    question: str | None
    gold: str | None
    texts: list[str | None]
    tokens: list[int | None] | None = None  # None: no counts in the dump
    answers: list[str | None] | None = None  # None: extracted from the texts
    prompt: str | None = None
    token_ids: list[list[int]] | None = None  # the exact ids, where the dump has them
    prompt_ids: list[int] | None = None

    def __post_init__(self) -> None:
        self.tokens = self.tokens or [None] * len(self.texts)
        self.answers = self.answers or [None] * len(self.texts)


class _Sample(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str | None = None
    answer: str | int | float | None = None
    tokens: int | None = Field(None, ge=0, strict=True)

    @model_validator(mode="after")
    def _text_or_answer(self) -> _Sample:
        if self.text is None and self.answer is None:
            raise ValueError("a sample needs 'text' or 'answer'")
        return self


class _SamplesLine(BaseModel):
    model_config = ConfigDict(extra="allow")
    question: str
    gold_answer: str | int | float
    samples: list[_Sample] = Field(min_length=1)


def _field(loc: Sequence) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "line"


def _read_samples(obj: dict, where: str) -> ImportedQuestion:
    try:
        line = _SamplesLine.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DumpError(
            f"{where}: {_field(first['loc'])}: {first['msg'].removeprefix('Value error, ')}"
        ) from None
    s = line.samples
    return ImportedQuestion(
        where, line.question, str(line.gold_answer), [x.text for x in s], [x.tokens for x in s],
        [None if x.answer is None else str(x.answer) for x in s],
    )  # fmt: skip


def _read_lm_eval(obj: dict, where: str) -> ImportedQuestion:
    resps = obj.get("resps")
    if not isinstance(resps, list) or not resps:
        raise DumpError(f"{where}: resps: expected a list with one list of texts per request")
    texts = []
    for r, request in enumerate(resps):
        for t, text in enumerate(request if isinstance(request, list) else [request]):
            if not isinstance(text, str):
                raise DumpError(f"{where}: resps[{r}][{t}]: expected a generated text")
            texts.append(text)
    doc = obj.get("doc") if isinstance(obj.get("doc"), dict) else {}
    arguments = obj.get("arguments")
    prompt = None
    if isinstance(arguments, dict):  # lm-eval >= 0.4.3 writes gen_args_i.arg_j
        prompt = (arguments.get("gen_args_0") or {}).get("arg_0")
    elif isinstance(arguments, list) and arguments and isinstance(arguments[0], list):
        prompt = arguments[0][0]
    prompt = prompt if isinstance(prompt, str) else None
    question = _first(doc, QUESTION_KEYS) or prompt
    gold = obj.get("target")
    gold = _first(doc, GOLD_KEYS) if gold in (None, "") else gold
    gold = None if gold is None else str(gold)
    return ImportedQuestion(where, question, gold, texts, prompt=prompt)


def _read_openai(obj: dict, where: str) -> ImportedQuestion:
    response = obj.get("response", obj)
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or not choices:
        raise DumpError(f"{where}: choices: expected a completions response with choices")
    texts, tokens = [], []
    for c, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise DumpError(f"{where}: choices[{c}]: expected an object")
        text = choice.get("text")
        message = choice.get("message")
        if text is None and isinstance(message, dict):
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if reasoning:  # a reasoning parser split the thinking off; join them back
                text = f"{reasoning}\n</think>\n\n{text}"
        if not isinstance(text, str):
            raise DumpError(f"{where}: choices[{c}]: no 'text' or 'message.content'")
        texts.append(text)
        tokens.append(_choice_tokens(choice))
    usage = response.get("usage") or {}
    if len(choices) == 1 and tokens[0] is None and isinstance(usage.get("completion_tokens"), int):
        tokens[0] = usage["completion_tokens"]
    prompt = obj.get("prompt") if isinstance(obj.get("prompt"), str) else None
    return ImportedQuestion(where, obj.get("question"), _gold(obj), texts, tokens, prompt=prompt)


def _choice_tokens(choice: dict) -> int | None:
    if isinstance(choice.get("token_ids"), list):
        return len(choice["token_ids"])
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        for key in ("tokens", "content"):  # completions, chat completions
            if isinstance(logprobs.get(key), list):
                return len(logprobs[key])
    return None


def _read_vllm(obj: dict, where: str) -> ImportedQuestion:
    outputs = obj.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise DumpError(f"{where}: outputs: expected vLLM's list of completion outputs")
    texts, tokens, token_ids = [], [], []
    for o, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("text"), str):
            raise DumpError(f"{where}: outputs[{o}].text: expected the generated text")
        texts.append(output["text"])
        ids = output.get("token_ids")
        tokens.append(len(ids) if isinstance(ids, list) else None)
        token_ids.append(ids if isinstance(ids, list) else None)
    prompt = obj.get("prompt") if isinstance(obj.get("prompt"), str) else None
    prompt_ids = obj.get("prompt_token_ids")
    return ImportedQuestion(
        where, obj.get("question"), _gold(obj), texts, tokens, prompt=prompt,
        token_ids=token_ids if None not in token_ids else None,
        prompt_ids=prompt_ids if isinstance(prompt_ids, list) else None,
    )  # fmt: skip


READERS: dict[str, Callable[[dict, str], ImportedQuestion]] = {
    "samples": _read_samples, "lm-eval": _read_lm_eval, "openai": _read_openai,
    "vllm": _read_vllm,
}  # fmt: skip


def _first(obj: dict, keys: Sequence[str]):
    return next((obj[k] for k in keys if obj.get(k) not in (None, "")), None)


def _gold(obj: dict) -> str | None:
    gold = _first(obj, ("gold_answer", "answer"))
    return None if gold is None else str(gold)


def detect_format(obj: dict, where: str) -> str:
    """The format of a dump from its first object."""
    if "samples" in obj:
        return "samples"
    if "resps" in obj and "doc_id" in obj:
        return "lm-eval"
    if "choices" in obj or isinstance(obj.get("response"), dict):
        return "openai"
    if "outputs" in obj:
        return "vllm"
    raise DumpError(
        f"{where}: cannot tell the format (no 'samples', 'resps', 'choices' or 'outputs' "
        f"field); name it with one of {', '.join(FORMATS)}"
    )


def read_dump(path: str | Path, fmt: str | None = None) -> tuple[str, list[ImportedQuestion]]:
    """Read one dump file; returns its format and its questions in file order."""
    return _parse_dump(Path(path), _read_bytes(Path(path)), fmt)


def _read_bytes(path: Path) -> bytes:
    """The dump's bytes (gunzipped where the name ends in ``.gz``)."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as exc:  # (gzip.BadGzipFile is an OSError)
        raise DumpError(f"{path}: cannot read the dump ({exc})") from None


def _parse_dump(path: Path, raw: bytes, fmt: str | None) -> tuple[str, list[ImportedQuestion]]:
    if fmt is not None and fmt not in READERS:
        raise DumpError(f"unknown dump format {fmt!r}; use one of {', '.join(FORMATS)}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DumpError(f"{path}: cannot read the dump ({exc})") from None
    questions: list[ImportedQuestion] = []
    seen_docs: set = set()
    for where, obj in json_records(path, text, DumpError):
        if not isinstance(obj, dict):
            raise DumpError(f"{where}: expected a JSON object (one per line, or array item)")
        fmt = fmt or detect_format(obj, where)
        if fmt == "lm-eval":  # one line per (filter, doc): the responses are the same
            if obj.get("doc_id") in seen_docs:
                continue
            seen_docs.add(obj.get("doc_id"))
        questions.append(READERS[fmt](obj, where))
    if not questions:
        raise DumpError(f"{path}: the dump holds no samples")
    return fmt or "samples", questions


def extract_answer(text: str) -> str:
    """The answer a whole sample gives: its last ``\\boxed{}``, else math-verify's
    extraction of the last expression, else ``ERR``."""
    from .answers import extract_boxed

    boxed = extract_boxed(text)
    if boxed:
        return boxed
    try:
        from math_verify import parse

        parsed = parse(text[-2000:], parsing_timeout=math_timeout())
    except Exception:  # math-verify raises on some inputs; nothing was extracted
        parsed = []
    return str(parsed[1]).strip() if len(parsed) > 1 and str(parsed[1]).strip() else UNPARSABLE


def texts_path(store: str | Path) -> Path:
    """The sidecar holding an imported store's sample texts."""
    store = Path(store)
    return store.with_name(store.stem + ".texts.jsonl")


def load_tokenizer(name: str) -> Callable[[str], int]:
    """A token counter from a Hugging Face tokenizer (a local directory or a hub id)."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # OSError (not found), ValueError (not a tokenizer), ...
        raise DumpError(f"tokenizer {name!r} cannot be loaded: {exc}") from None
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def import_dumps(
    paths: Sequence[str | Path],
    out: str | Path,
    fmt: str | None = None,
    questions: Sequence | None = None,
    count_tokens: Callable[[str], int] | None = None,
    delta: int = 500,
    tokenizer: str | None = None,
) -> Path:
    """Import dump files (in order) into the width-only store ``out``
    (``.../MODEL/DATASET.json``), with its ``.meta.json`` and, where every sample has its
    text, the texts sidecar. ``questions`` (objects with ``question`` and ``answer``, e.g.
    from :func:`autotts.live.questions.load_questions`) fill in what the dump lines lack, in
    order; ``count_tokens`` counts samples without a token count. Returns the store path."""
    read, formats, digests = [], [], {}
    for path in map(Path, paths):  # each file read once: parsed and hashed from its bytes
        raw = _read_bytes(path)
        found, items = _parse_dump(path, raw, fmt)
        digests[str(path)] = hashlib.sha256(raw).hexdigest()
        formats.append(found)
        read.extend(items)
    if questions is not None and len(questions) != len(read):
        raise DumpError(
            f"the dumps hold {len(read)} questions but the question file {len(questions)}: "
            "they are matched in order, so give one question per dump line"
        )
    records, sidecar = [], []
    for q, item in enumerate(read):
        records.append(_record(item, questions[q] if questions else None, count_tokens, delta))
        if all(text is not None for text in item.texts):
            line = {"question": records[-1]["question"], "prompt": item.prompt,
                    "texts": item.texts}  # fmt: skip
            if item.token_ids is not None:  # probes then cut at the sampled ids themselves
                line.update(token_ids=item.token_ids, prompt_ids=item.prompt_ids)
            sidecar.append(line)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    side = texts_path(out)
    complete = len(sidecar) == len(records)
    if complete:
        atomic_write_text(side, "".join(json.dumps(line) + "\n" for line in sidecar))
    elif side.exists():
        side.unlink()  # a stale sidecar must not be paired with this store
    meta = {
        "imported_from": [str(p) for p in paths],
        "sha256": digests,
        "format": formats[0] if len(set(formats)) == 1 else formats,
        "width_only": True,
        "texts": side.name if complete else None,
        "delta": delta,
        "tokenizer": tokenizer,
        "versions": {"autotts": __version__},
        "questions": len(records),
        "branches": sum(len(r["each_branch"]) for r in records),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(meta_path(out), json.dumps(meta, indent=2))
    atomic_write_text(out, json.dumps(records))
    return out


def _record(item: ImportedQuestion, given, count_tokens, delta: int) -> dict:
    question = item.question if item.question is not None else getattr(given, "question", None)
    gold = item.gold if item.gold is not None else getattr(given, "answer", None)
    for value, field in ((question, "question"), (gold, "gold_answer")):
        if not isinstance(value, str) or not value.strip():
            raise DumpError(
                f"{item.where}: {field}: missing; add a '{field}' field to each line or give "
                "a question file (question and answer per line, in the dump's order)"
            )
    branches = []
    for i, (text, answer, tokens) in enumerate(
        zip(item.texts, item.answers, item.tokens, strict=True)
    ):
        if tokens is None:
            if count_tokens is None or text is None:
                raise DumpError(
                    f"{item.where}: sample {i}: no token count in the dump; name a tokenizer "
                    "to count the text's tokens (the model's, e.g. its local directory)"
                )
            tokens = count_tokens(text)
        branches.append([[], tokens, answer if answer is not None else extract_answer(text)])
    return {
        "question": question,
        "gold_answer": gold,
        "probe_freq": delta,
        "each_branch": branches,
        "final_answers_trace": [b[2] for b in branches],
        "width_only": True,
    }
