"""The LLM discovery loop: rounds of :class:`~autotts.discovery.agent.LLMProposer` until the
run has its trials, ``parallel`` rounds at a time, within the LLM budget; then the best
candidate on the search set is judged on the search and held-out environments."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..results.run_directory import RunDirectory, RunError
from ..sandbox import SandboxLimits
from .agent import LLMProposer
from .candidates import evaluate_candidate
from .objective import ranking_key

MAX_ENDPOINT_FAILURES = 3  # consecutive rounds whose LLM request failed: the run stops


def run_llm_discovery(
    run: RunDirectory, settings, config: dict, api_key, console=None, isolate: bool = True
) -> dict:
    """Run (or continue) LLM rounds until ``settings.trials`` rounds are recorded, then pick
    the best candidate on the search set (recorded as the ``best`` stage). Candidates run in
    the OS sandbox; ``isolate=False`` (``--unsafe-no-sandbox``) runs them without it."""
    proposer = LLMProposer(run, settings, config["llm"], api_key, search_envs(settings), isolate)
    parallel = max(1, int(config["llm"].get("parallel", 1)))
    return run_rounds(run, settings, config, proposer, config["llm"], parallel, console, isolate)


def search_envs(settings) -> dict:
    from ..envs.replay import ReplayEnvironment

    return {e: ReplayEnvironment.load(e, settings.env_dir) for e in settings.search_envs}


def run_rounds(
    run: RunDirectory, settings, config: dict, proposer, budget: dict, parallel: int = 1,
    console=None, isolate: bool = True,
) -> dict:  # fmt: skip
    """The rounds of any :class:`~autotts.discovery.proposer.Proposer` until the run has
    ``settings.trials`` of them, ``parallel`` at a time, within ``budget`` (``max_usd``,
    ``max_llm_tokens`` of the logged usage); then the best by the objective is judged."""
    done = len([r for r in run.rounds() if r.get("stage") == "llm"])
    failures = 0
    for start in range(done, settings.trials, parallel):
        over = over_budget(run, budget)
        if over:
            run.append({"event": "budget_stop", "round": start, "reason": over})
            if console is not None:
                console.print(f"the LLM budget is spent ({over}): no more rounds", highlight=False)
            break
        numbers = range(start, min(start + parallel, settings.trials))
        with ThreadPoolExecutor(max_workers=len(numbers)) as pool:  # K proposals at once
            outcomes = list(pool.map(proposer.run_round, numbers))
        for number, outcome in zip(numbers, outcomes, strict=True):
            failures = _report_round(console, settings, number, outcome, failures, run)
    scored = proposer._scored()
    if scored and not run.stage_done("best"):
        best = max(scored, key=ranking_key)
        run.finish_stage("best", candidate=best["candidate"], score=best["score"])
    best = run.stage_done("best")
    if best and not run.stage_done("judged"):
        judge_best(run, settings, best["candidate"], config.get("name", "discovered"), isolate)
        run.finish_stage("judged")
    return {"rounds": [r for r in run.rounds() if r.get("stage") == "llm"], "best": best}


def _report_round(console, settings, number: int, outcome: dict, failures: int, run) -> int:
    """Print a round's outcome; return the count of consecutive endpoint failures, raising
    :class:`RunError` once it reaches ``MAX_ENDPOINT_FAILURES``."""
    if console is not None:
        console.print(
            f"round {number + 1}/{settings.trials}: {outcome.get('status')} — "
            f"{outcome.get('lesson', '')[:160]}",
            highlight=False,
        )
    error = outcome.get("error") or ""
    failures = failures + 1 if error.startswith("LLM request failed") else 0
    if failures >= MAX_ENDPOINT_FAILURES:
        raise RunError(
            f"the LLM endpoint failed {failures} rounds in a row (last: {error[:300]}); "
            f"the run stops here. Fix the endpoint, then resume the run in {run.path}"
        )
    return failures


def over_budget(run: RunDirectory, llm: dict) -> str | None:
    """Why the run's LLM budget (``max_usd``, ``max_llm_tokens``) is spent, or None."""
    usage = [r for r in run.records() if r.get("event") == "llm_usage"]
    usd = sum(r.get("usd") or 0.0 for r in usage)
    tokens = sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in usage)
    if llm.get("max_usd") is not None and usd >= llm["max_usd"]:
        return f"${usd:.4f} of ${llm['max_usd']:g}"
    if llm.get("max_llm_tokens") is not None and tokens >= llm["max_llm_tokens"]:
        return f"{tokens:,} of {llm['max_llm_tokens']:,} tokens"
    return None


def judge_best(
    run: RunDirectory, settings, candidate: str, name: str, isolate: bool = True
) -> None:
    """The chosen candidate's full β curve (sandboxed, ``final_seeds``) next to CMC and
    SC@64, on the search and the held-out environments (``search.json``, ``heldout.json``)."""
    from ..envs.replay import ReplayEnvironment
    from ..evaluation.evaluator import DEFAULT_BETAS
    from .stages import curves_with_baselines, with_intervals, write_judgement

    source = run.candidate_source(int(candidate))
    targets = (("search.json", settings.search_envs), ("heldout.json", settings.heldout_envs))
    for relative, env_ids in targets:
        if not env_ids:
            continue
        envs = {e: ReplayEnvironment.load(e, settings.env_dir) for e in env_ids}
        result = evaluate_candidate(
            source,
            envs,
            list(DEFAULT_BETAS),
            settings.final_seeds,
            workers=settings.workers or 2,
            trace_seeds=0,
            limits=SandboxLimits(cpu_s=3600),
            isolate=isolate,
        )
        data = curves_with_baselines(None, name, env_ids, settings)
        data["name"] = name
        data["status"] = "ok" if result.ok else f"rejected: {result.reason}"
        data["winner"] = [{"setting": f"β={p['beta']:g}", **p} for p in result.curve]
        for point, (accuracy, tokens) in zip(data["winner"], result.tables, strict=False):
            with_intervals(point, accuracy, tokens)
        data["_tables"]["winner"] = result.tables
        if result.ok:
            write_judgement(run, relative, data)
        else:
            data.pop("_tables")
            run.write_json(relative, data)


__all__ = ["judge_best", "over_budget", "run_llm_discovery", "run_rounds", "search_envs"]
