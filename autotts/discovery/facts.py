"""What the LLM proposer is told about its search environments, measured on the stores
themselves: Δ, how long branches run (in intervals and tokens), how often a probe or a final
answer is "ERR", and what an action costs there."""

from __future__ import annotations

import statistics


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return cuts[0], statistics.median(values), cuts[-1]


def environment_facts(envs: dict) -> str:
    """One line per replay environment (``{env_id: ReplayEnvironment}``)."""
    lines = []
    for env_id, env in envs.items():
        questions = env.questions
        intervals = [len(p) for q in questions for p in q.probes]
        tokens = [t for q in questions for t in q.tokens]
        probes = [a for q in questions for p in q.probes for a in p]
        finals = [f for q in questions for f in q.finals]
        deltas = sorted({q.delta for q in questions})
        low, mid, high = _quantiles(intervals)
        t_low, t_mid, t_high = _quantiles(tokens)
        err_probes = 100.0 * sum(a == "ERR" for a in probes) / max(1, len(probes))
        err_finals = 100.0 * sum(f == "ERR" for f in finals) / max(1, len(finals))
        branches = min(len(q.tokens) for q in questions)
        lines.append(
            f"- {env_id}: Δ = {'/'.join(str(d) for d in deltas)} tokens; {len(questions)} "
            f"questions × {branches} branches; a branch runs {mid:g} intervals at the median "
            f"(10%–90%: {low:g}–{high:g}), {t_mid / 1000:.1f}k tokens "
            f'({t_low / 1000:.1f}k–{t_high / 1000:.1f}k); probe answers are "ERR" '
            f"{err_probes:.0f}% of the time, final answers {err_finals:.1f}%; a probe costs "
            f"{env.probe_cost} tokens"
        )
    return "\n".join(lines)


__all__ = ["environment_facts"]
