"""Quick tests of a draft during an LLM round: the model chooses the β points, environments
and seeds (within a budget stated in the prompt before the first test), and the reply gives
the draft's accuracy and tokens at each β with its paired differences against CMC at equal
tokens and against SC@64, on the same questions and seeds, each with a 95 % interval.

A test request is one line of the reply, for example::

    TEST: betas=0,0.25,0.5,1 envs=Qwen3-1.7B/aime24,Qwen3-8B/aime24 seeds=6

Anything left out takes its default; anything past the budget is cut, and the reply says
what was cut and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..evaluation.sc64_cache import sc64_report
from ..results.stats import interval_of
from .objective import CMCReference, as_settings, cmc_reference, describe, score_against_cmc
from .verdict import margin_interval, margins_vs_cmc, outcome_tables, paired_replicates

MAX_BETAS = 5
MAX_SEEDS = 10
MAX_EPISODES = 6_000  # β points × environments × questions × seeds, per test
DEFAULT_BETAS = (0.0, 0.3, 0.6, 1.0)
DEFAULT_SEEDS = 5
FIELD = re.compile(r"(\w+)\s*=\s*(\S+)")


@dataclass
class TestRequest:
    """What one quick test evaluates, and what was changed from what the model asked."""

    betas: list[float]
    envs: list[str]
    seeds: int
    notes: list[str] = field(default_factory=list)


def budget_text(search_envs: list[str], questions: int, tests: int) -> str:
    """The quick tests' budget, stated in the round's prompt before any test is asked."""
    return (
        f"Up to {tests} quick tests per round before you submit (`ACTION: test`). Choose one "
        "with a line `TEST: betas=0,0.3,1 envs=ENV,ENV seeds=N` (any part may be left out): at "
        f"most {MAX_BETAS} β values in [0, 1], environments among the search environments, "
        f"at most {MAX_SEEDS} seeds, and at most {MAX_EPISODES:,} episodes (β values × "
        f"environments × {questions} questions × seeds). Default: β "
        f"{', '.join(f'{b:g}' for b in DEFAULT_BETAS)} on {', '.join(search_envs[:2])} with "
        f"{DEFAULT_SEEDS} seeds. A test reports, per β, your accuracy and tokens and the "
        "paired differences against CMC at equal tokens and against SC@64 on the same "
        "questions and seeds, with 95% intervals. Instead of a test you may ask for traces "
        "(`ACTION: traces` with a line `TRACES: candidate=0003 env=ENV beta=0.5 seeds=4`, at "
        "most 8 seeds): the execution traces of the episodes where that earlier candidate "
        "answered wrong while CMC at equal tokens answered right (same question and seed); "
        "it counts as a test."
    )


def parse_request(reply: str, search_envs: list[str], questions: int) -> TestRequest:
    """The test a reply asks for (its last ``TEST:`` line), within the budget."""
    request = TestRequest(list(DEFAULT_BETAS), list(search_envs[:2]), DEFAULT_SEEDS)
    fields = request_fields(reply, "TEST") or {}
    notes = request.notes
    if "betas" in fields:
        try:
            betas = sorted({round(float(b), 4) for b in fields["betas"].split(",") if b})
        except ValueError:
            betas = []
        if betas and all(0.0 <= b <= 1.0 for b in betas):
            request.betas = betas
        else:
            notes.append(f"betas={fields['betas']} is not a list of values in [0, 1]: default used")
    if "envs" in fields:
        wanted = [e for e in fields["envs"].split(",") if e]
        unknown = [e for e in wanted if e not in search_envs]
        if unknown or not wanted:
            notes.append(f"unknown environments {unknown}: default used (search: {search_envs})")
        else:
            request.envs = list(dict.fromkeys(wanted))
    if "seeds" in fields:
        try:
            request.seeds = max(1, int(fields["seeds"]))
        except ValueError:
            notes.append(f"seeds={fields['seeds']} is not a whole number: default used")
    if len(request.betas) > MAX_BETAS:
        notes.append(f"{len(request.betas)} β values: the first {MAX_BETAS} kept")
        request.betas = request.betas[:MAX_BETAS]
    if request.seeds > MAX_SEEDS:
        notes.append(f"seeds={request.seeds}: cut to {MAX_SEEDS}")
        request.seeds = MAX_SEEDS
    per_seed = len(request.betas) * len(request.envs) * questions
    if per_seed * request.seeds > MAX_EPISODES:
        seeds = max(1, MAX_EPISODES // per_seed)
        notes.append(
            f"{per_seed * request.seeds:,} episodes is over the {MAX_EPISODES:,} budget: "
            f"seeds cut to {seeds}"
        )
        request.seeds = seeds
    return request


def request_fields(reply: str | None, keyword: str) -> dict | None:
    """The ``name=value`` fields of a reply's last ``KEYWORD:`` line (``TEST``, ``TRACES``),
    or ``None`` when it has none."""
    lines = re.findall(rf"^\s*{keyword}:(.*)$", reply or "", re.MULTILINE | re.IGNORECASE)
    return dict(FIELD.findall(lines[-1])) if lines else None


def sc64_tables(env_ids: list[str], seeds: int, env_dir=None) -> tuple[list, list]:
    """SC@64's outcome tables on ``env_ids`` (per environment, ``(questions, seeds)``), from
    the SC@64 cache the evaluation summaries share (:mod:`autotts.evaluation.sc64_cache`)."""
    report = sc64_report(env_ids, seeds, env_dir)
    return outcome_tables(report, report.rows)


def report_text(request: TestRequest, result, reference, sc_tables) -> str:
    """The quick test's reply: per β the draft's numbers and paired differences."""
    head = f"{request.seeds} seeds per question on {', '.join(request.envs)}"
    notes = "".join(f"\nnote: {n}" for n in request.notes)
    if not result.ok:
        return f"{head}{notes}\nrejected: {result.reason}"
    family, cmc = as_settings(result.curve), as_settings(reference.curve)
    reps = paired_replicates(result.tables, reference.tables, sc_tables)
    sc_accuracy = float(np.mean([np.mean(t) for t in sc_tables[0]]))
    sc_tokens = float(np.mean([np.mean(t) for t in sc_tables[1]]))
    margins = {m["setting"]: m for m in margins_vs_cmc(family, cmc)}
    lines = [head + notes, f"SC@64 here: {sc_accuracy:.2f}% @ {sc_tokens / 1000:.1f}k"]
    for i, point in enumerate(family):
        line = f"{point['setting']}: {point['accuracy']:.2f}% @ {point['tokens'] / 1000:.1f}k"
        margin = margins.get(point["setting"])
        if margin is None:
            line += "; vs CMC: outside CMC's token range here, not compared"
        else:
            vs = margin_interval(family, cmc, reps, [margin])
            line += f"; vs CMC at equal tokens {vs.mean:+.2f} [{vs.low:+.2f}, {vs.high:+.2f}]"
        diff = interval_of(
            point["accuracy"] - sc_accuracy, reps[("winner", i, "acc")] - reps[("sc64", 0, "acc")]
        )
        lines.append(line + f"; vs SC@64 {diff.mean:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}]")
    overall = score_against_cmc(result.curve, result.tables, reference, reps=reps)
    lines.append(f"objective on this test: {describe(overall)}")
    return "\n".join(lines)


class Baselines:
    """CMC's and SC@64's outcomes on the environments and seeds a proposer asks about,
    computed once for each (environments, seeds) and kept."""

    def __init__(self, env_dir=None):
        self.env_dir = env_dir
        self._cmc: dict[tuple, CMCReference] = {}
        self._sc64: dict[tuple, tuple] = {}

    def cmc(self, env_ids: list[str], seeds: int) -> CMCReference:
        key = (tuple(env_ids), seeds)
        if key not in self._cmc:
            self._cmc[key] = cmc_reference(env_ids, seeds, self.env_dir)
        return self._cmc[key]

    def for_test(self, env_ids: list[str], seeds: int) -> tuple:
        """``(CMC reference, SC@64 tables)``: what :func:`report_text` compares against."""
        key = (tuple(env_ids), seeds)
        if key not in self._sc64:
            self._sc64[key] = sc64_tables(env_ids, seeds, self.env_dir)
        return self.cmc(env_ids, seeds), self._sc64[key]


__all__ = [
    "MAX_EPISODES",
    "Baselines",
    "TestRequest",
    "budget_text",
    "parse_request",
    "request_fields",
    "report_text",
]
