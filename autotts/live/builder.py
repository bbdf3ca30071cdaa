"""Build a replay store from live generation: ``autotts build-env``.

For every question, ``n`` branches are sampled from the question's prompt as one batch,
``Δ`` tokens at a time; after each interval every unfinished branch is probed (the
answer-forcing suffix, a short greedy decode). A branch ends at EOS or at the token limit; its
final answer is its last ``\\boxed{}``. The result is written in the shipped store format
(``each_branch = [probes, branch_tokens, final_answer]``), so it loads, replays, and can be
searched like the shipped stores, with a ``.meta.json`` beside it recording model, backend,
versions, settings and seed. With ``settings.logprobs`` (default 20) every branch also gets
its per-interval ``confidence`` and ``logprob`` signals (:mod:`autotts.core.signals`), which
confidence-based controllers such as DeepConf need.

Resumable per question: each finished question is written atomically to
``<store>.partial/qNNNNN.json`` before the next starts; a rerun with the same settings skips
them, and the store is assembled (atomically) once every question is there.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..envs.stores import QuestionRecord, meta_path
from ..errors import RunFailure
from ..utils.atomic_files import atomic_write_text
from .backend import GenerationBackend
from .live_environment import LiveEnvironment, LiveEpisode, LiveQuestion
from .settings import LiveSettings


class BuildError(RunFailure):
    """A build that cannot go on (message says why and what to do)."""


def sample_question(env: LiveEnvironment, question: int, n: int, seed: int) -> dict:
    """Sample ``n`` branches of one question to the end, probing after every interval;
    return the store record."""
    episode = LiveEpisode(env, question, seed)
    ids = tuple(episode.open(n))
    episode.extend(ids, 1, True)
    while active := tuple(i for i in ids if episode.live[i]):
        episode.extend(active, 1, True)
    state = episode.state
    branches = []
    for i, branch in enumerate(episode.branches):
        *probes, final = state.history[i]
        branches.append([probes, branch.generated, final])
    record = {
        "question": env.questions[question].question,
        "gold_answer": env.questions[question].answer,
        "probe_freq": env.settings.delta,
        "each_branch": branches,
        "final_answers_trace": [b[2] for b in branches],
    }
    if state.signals:  # one value per interval: len(probes) + 1 (see autotts.core.signals)
        record["signals"] = {
            name: [_fit(per_branch[i], len(b[0]) + 1) for i, b in enumerate(branches)]
            for name, per_branch in state.signals.items()
        }
    return record


def _fit(values: list, n: int) -> list:
    """A branch's interval values cut or padded (``None``) to the store's ``n`` intervals: a
    branch ending exactly on an interval boundary counts one empty interval more live."""
    return [*values[:n], *[None] * (n - len(values))]


def build_environment(
    backend: GenerationBackend,
    questions: Sequence[LiveQuestion],
    out: str | Path,
    n: int = 128,
    settings: LiveSettings | None = None,
    seed: int = 0,
    source: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Sample a store for ``questions`` into ``out`` (``.../MODEL/DATASET.json``); resumes a
    partial build with the same settings. ``progress(done, total, seconds)`` is called after
    each question. Returns the store path."""
    settings = settings or LiveSettings()
    build = PartialBuild(
        out, backend.model, backend.name, backend.versions(), settings, n, seed, source,
        len(questions), builder="stepwise", sampling=backend.effective_sampling(settings.sampling),
    )  # fmt: skip
    env = LiveEnvironment(backend, questions, settings, max_branches=n)
    build.fill(lambda q: sample_question(env, q, n, seed), progress)
    return build.finish()


class PartialBuild:
    """A store under construction: each finished question written atomically to
    ``<store>.partial/qNNNNN.json`` (in any order), resumable only with the settings it was
    started with; :meth:`finish` assembles the store and its ``.meta.json`` atomically."""

    def __init__(
        self, out, model, backend, versions, settings, n, seed, source, n_questions, builder,
        sampling,
    ):  # fmt: skip
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.stem + ".partial")
        self.partial.mkdir(parents=True, exist_ok=True)
        self.n_questions = n_questions
        self.meta = {
            "model": model,
            "backend": backend,
            "builder": builder,
            "versions": {"autotts": __version__, **versions},
            "settings": settings.model_dump(),
            "sampling": sampling,  # effective: the model's defaults with the overrides
            "branches": n,
            "seed": seed,
            "questions": source,
            "n_questions": n_questions,
        }
        _check_same_build(self.partial / "build.json", self.meta)

    def _path(self, q: int) -> Path:
        return self.partial / f"q{q:05d}.json"

    def done(self, q: int) -> bool:
        return self._path(q).exists()

    def write(self, q: int, record: dict) -> None:
        atomic_write_text(self._path(q), json.dumps(record))

    def fill(
        self, work: Callable[[int], dict], progress: Callable[[int, int, float], None] | None
    ) -> None:
        """Write ``work(q)`` for every question not written yet, in order;
        ``progress(done, total, seconds)`` after each."""
        for q in range(self.n_questions):
            if self.done(q):
                continue
            start = time.perf_counter()
            self.write(q, work(q))
            if progress is not None:
                progress(q + 1, self.n_questions, time.perf_counter() - start)

    def finish(self, summarise: Callable[[list[dict]], dict] | None = None) -> Path:
        """Assemble the store; ``summarise(records)`` may take per-question bookkeeping out
        of the records and returns what to add to the meta (default: generated tokens)."""
        records = [json.loads(self._path(q).read_text()) for q in range(self.n_questions)]
        meta = dict(self.meta)
        if summarise is None:
            meta["generated_tokens"] = sum(b[1] for r in records for b in r["each_branch"])
        else:
            meta.update(summarise(records))
        for raw in records:
            QuestionRecord.model_validate(raw)  # what we assemble must load as a store
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out = self.out
        atomic_write_text(meta_path(out), json.dumps(meta, indent=2))
        atomic_write_text(out, json.dumps(records))
        shutil.rmtree(self.partial)
        return out


def _check_same_build(path: Path, meta: dict) -> None:
    """A partial build may only be resumed with the settings it was started with."""
    keys = ("model", "builder", "settings", "branches", "seed", "questions")
    identity = {k: meta[k] for k in keys}
    if path.exists():
        before = json.loads(path.read_text())
        if before != identity:
            changed = sorted(k for k in identity if before.get(k) != identity[k])
            raise BuildError(
                f"{path.parent} holds a partial build with different {', '.join(changed)}; "
                "rerun with the same settings to resume it, or delete that directory"
            )
    else:
        atomic_write_text(path, json.dumps(identity, indent=2))
