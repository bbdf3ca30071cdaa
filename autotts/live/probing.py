"""Probe answers for an imported store: ``autotts envs probe``.

An imported store (:mod:`autotts.envs.sample_import`) holds whole samples; its texts sidecar holds
what each branch said. Probing re-reads every branch at each Δ-token cut: the prompt, the
branch's first ``k·Δ`` tokens and the answer-forcing suffix, decoded greedily for a few tokens
(``settings.probe_tokens``), exactly like the probes of ``build-env``. No branch token is
generated again: the work is prefill, which the engine's prefix cache shares between the cuts
of a branch and the branches of a question. A branch of ``T`` tokens gets ``ceil(T/Δ) − 1``
probes (none at its end, where its final answer is), the convention of the replay engine.
Cuts are made in the sampled token ids where the dump kept them (vLLM outputs), else in the
text re-encoded by the model's tokenizer; the prompt likewise (the dump's, else the question
in the chat template with ``settings``).

Resumable per question like ``build-env`` (:class:`~autotts.live.builder.PartialBuild`): each
probed question is written atomically before the next starts, and the store and its
``.meta.json`` (model, suffix, Δ, versions, the probe cost against a full build) are written
once every question is there.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from ..envs.answers import probe_answer
from ..envs.sample_import import texts_path
from ..envs.stores import QuestionRecord, load_records, meta_path
from ..utils.atomic_files import json_lines
from .backend import BackendError, GenerationBackend, GenerationRequest
from .builder import BuildError, PartialBuild
from .settings import LiveSettings

COST_KEY = "_probe_cost"  # per-question counts kept in the partial files, summed at the end


def read_texts(store: Path, records: list[QuestionRecord]) -> list[dict]:
    """The texts sidecar of ``store``, checked against its records."""
    side = texts_path(store)
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildError(
            f"{store}: no texts sidecar {side.name}; probing needs each sample's text "
            "(import a dump whose samples have their text)"
        ) from None
    lines = [line for _, line in json_lines(side, text, BuildError)]
    if len(lines) != len(records):
        raise BuildError(f"{side}: {len(lines)} lines for the store's {len(records)} questions")
    for q, (line, record) in enumerate(zip(lines, records, strict=True)):
        texts = line.get("texts") if isinstance(line, dict) else None
        if line.get("question") != record.question or not isinstance(texts, list):
            raise BuildError(f"{side}, line {q + 1}: does not belong to question {q} of {store}")
        if len(texts) != len(record.each_branch):
            raise BuildError(
                f"{side}, line {q + 1}: {len(texts)} texts for {len(record.each_branch)} branches"
            )
    return lines


def probe_question(
    backend: GenerationBackend, record: QuestionRecord, line: dict, settings: LiveSettings
) -> dict:
    """The store record of one question with its probe answers filled in (one batch)."""
    if line.get("prompt_ids"):
        prompt = tuple(line["prompt_ids"])
    elif line.get("prompt"):
        prompt = backend.encode(line["prompt"])
    else:
        message = settings.user_message(record.question)
        prompt = backend.prompt(message, settings.system, settings.thinking)
    suffix = backend.encode(settings.probe_suffix)
    if prompt is None or isinstance(prompt, str) or suffix is None:
        raise BackendError(
            f"{backend.name} works in text only: probing cuts branches at token positions, "
            "so it needs a backend with token ids (vllm in this process, or a vLLM server)"
        )
    delta, requests, cuts_per_branch = settings.delta, [], []
    exact = line.get("token_ids") or [None] * len(line["texts"])
    for text, sampled in zip(line["texts"], exact, strict=True):
        ids = tuple(sampled) if sampled is not None else backend.encode(text) or ()
        cuts = range(delta, len(ids), delta)
        cuts_per_branch.append(len(cuts))
        for cut in cuts:
            prefix = (*prompt, *ids[:cut], *suffix)
            requests.append(
                GenerationRequest(prefix, settings.probe_tokens, {"temperature": 0.0}, 0)
            )
    generations = backend.generate(requests) if requests else []
    answers = iter(probe_answer(g.text, settings.probe_suffix) for g in generations)
    branches = [
        [[next(answers) for _ in range(n)], tokens, final]
        for n, (_, tokens, final) in zip(cuts_per_branch, record.each_branch, strict=True)
    ]
    raw = record.model_dump(exclude_none=True, exclude={"width_only", "signals"})
    raw.update(probe_freq=delta, each_branch=branches)
    raw[COST_KEY] = {
        "probes": len(requests),
        "generated": sum(g.n_tokens for g in generations),
        "prefill": sum(len(r.prefix) for r in requests),
        "cached": sum(g.cached_prompt_tokens for g in generations),
        "branch_tokens": sum(tokens for _, tokens, _ in record.each_branch),
    }
    return raw


def probe_store(
    backend: GenerationBackend,
    store: str | Path,
    out: str | Path | None = None,
    settings: LiveSettings | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Fill in the probe answers of the imported store ``store`` into ``out`` (default: in
    place); resumes a partial run with the same settings. Returns the store path."""
    store = Path(store)
    out = Path(out) if out is not None else store
    records = load_records(store)
    if not any(r.width_only for r in records):
        raise BuildError(f"{store} already has probe answers (it is not a width-only store)")
    settings = settings or LiveSettings(delta=records[0].probe_freq)
    lines = read_texts(store, records)
    build = PartialBuild(
        out, backend.model, backend.name, backend.versions(), settings,
        sum(len(r.each_branch) for r in records), 0, str(store), len(records),
        builder="envs-probe", sampling={"temperature": 0.0},
    )  # fmt: skip
    build.fill(lambda q: probe_question(backend, records[q], lines[q], settings), progress)
    if texts_path(out) != texts_path(store):
        shutil.copyfile(texts_path(store), texts_path(out))
    imported_meta = meta_path(store)
    imported = json.loads(imported_meta.read_text()) if imported_meta.exists() else None
    return build.finish(lambda finished: {**_cost_summary(finished), "imported": imported})


def _cost_summary(records: list[dict]) -> dict:
    """The probe cost of the whole store (popped from the records), against ``build-env``:
    a full build generates every branch token as well as the same probes."""
    totals: dict[str, int] = {}
    for record in records:
        for key, value in record.pop(COST_KEY).items():
            totals[key] = totals.get(key, 0) + value
    full = totals["branch_tokens"] + totals["generated"]
    return {
        "generated_tokens": totals["generated"],
        "probe_cost": totals,
        "build_env_generated_tokens": full,
        "generated_ratio_vs_build_env": totals["generated"] / full if full else 0.0,
    }
