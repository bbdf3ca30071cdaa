"""Traces on request during a round: the proposer names an earlier candidate, an environment,
a β and a number of seeds, and gets the execution traces of the episodes where that
candidate answered wrong while CMC at equal tokens (the CMC setting whose mean tokens there
are closest) answered right on the same question and seed, within a character budget that
says how many it leaves out. A request is one line of the reply::

    TRACES: candidate=0003 env=Qwen3-1.7B/aime24 beta=0.5 seeds=4

It counts against the round's quick tests.
"""

from __future__ import annotations

import numpy as np

from .candidates import evaluate_candidate
from .quicktest import request_fields
from .replies import render_trace

MAX_TRACE_SEEDS = 8
BUDGET_CHARS = 6000


def wants_traces(reply: str) -> bool:
    return request_fields(reply, "TRACES") is not None


def traces_text(proposer, reply: str) -> str:
    """The reply to the last ``TRACES:`` line of ``reply`` (``proposer``: a
    :class:`~autotts.discovery.proposer.Proposer`)."""
    fields = request_fields(reply, "TRACES") or {}
    scored = proposer._scored()
    candidate = fields.get("candidate") or (scored and scored[-1]["candidate"])
    env_id = fields.get("env", next(iter(proposer.envs)))
    try:
        beta = float(fields.get("beta", 0.5))
        seeds = int(fields.get("seeds", 4))
        number = int(candidate)
    except (TypeError, ValueError):
        return "traces: candidate, beta and seeds must be numbers (e.g. candidate=0003 beta=0.5 seeds=4)"
    source = proposer.run.candidate_source(number)
    if env_id not in proposer.envs or source is None or not 0.0 <= beta <= 1.0:
        known = ", ".join(r["candidate"] for r in proposer._scored()) or "none yet"
        return (
            f"traces: no such request ({fields}): candidates with a controller: {known}; "
            f"environments: {', '.join(proposer.envs)}; beta in [0, 1]"
        )
    cut = f" (seeds cut to {MAX_TRACE_SEEDS})" if seeds > MAX_TRACE_SEEDS else ""
    seeds = max(1, min(seeds, MAX_TRACE_SEEDS))
    result = evaluate_candidate(
        source,
        {env_id: proposer.envs[env_id]},
        [beta],
        seeds,
        workers=2,
        trace_seeds=seeds,
        limits=proposer.limits,
        isolate=proposer.isolate,
    )
    head = f"traces of candidate {number:04d} on {env_id} at β={beta:g}, {seeds} seeds{cut}"
    if not result.ok:
        return f"{head}: rejected: {result.reason}"
    reference = proposer.baselines.cmc([env_id], seeds)
    tokens = result.curve[0]["tokens"]
    closest = min(
        range(len(reference.curve)), key=lambda i: abs(reference.curve[i]["tokens"] - tokens)
    )
    cmc_right = np.asarray(reference.tables[closest][0][0]) > 0
    losing = [t for t in result.traces if not t["correct"] and cmc_right[t["question"], t["seed"]]]
    losing.sort(key=lambda t: (t["question"], t["seed"]))
    cmc = reference.curve[closest]
    out = [
        f"{head}: {result.curve[0]['accuracy']:.2f}% @ {tokens / 1000:.1f}k; CMC β="
        f"{cmc['beta']:g} ({cmc['accuracy']:.2f}% @ {cmc['tokens'] / 1000:.1f}k) was right on "
        f"{len(losing)} episodes this candidate got wrong"
    ]
    used = len(out[0])
    for shown, trace in enumerate(losing):
        text = render_trace(trace, "lost to CMC")
        if used + len(text) > BUDGET_CHARS:
            out.append(f"… {len(losing) - shown} more such episodes left out (budget)")
            break
        out.append(text)
        used += len(text)
    return "\n\n".join(out)


__all__ = ["traces_text", "wants_traces"]
