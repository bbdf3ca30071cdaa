"""Sample efficiency of the collaboration searches: evaluations each needs to reach 95 % (and
99 %) of the best objective any of them found (accuracy within a FLOP budget on AIME24).

Compared on the same graph space, budget and evaluator: Optuna TPE with two objectives
(accuracy, FLOPs; the budget as a constraint), Optuna TPE on the scalar objective, and the
Agent-REINFORCE agent with its numeric (REINFORCE) update. The LLM-driven agent needs an
endpoint: pass --llm-model/--llm-base-url to add it.

    python benchmarks/collab_search_efficiency.py [--evaluations 80] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from autotts.collab.evaluate import CrossSpec, GraphEvaluator
from autotts.collab.search import (
    AgentSettings,
    GraphSearch,
    agent_search,
    evaluations_to_reach,
    optuna_search,
)
from autotts.results.run_directory import RunDirectory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=2e15)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--llm-model")
    parser.add_argument("--llm-base-url")
    args = parser.parse_args()

    methods = {
        "optuna (accuracy, FLOPs)": lambda s, seed: optuna_search(s, args.evaluations, seed),
        "optuna (scalar)": lambda s, seed: optuna_search(s, args.evaluations, seed, pareto=False),
        "agent (REINFORCE update)": lambda s, seed: agent_search(
            s, AgentSettings(args.evaluations, seed=seed)
        ),
    }
    if args.llm_model:
        from autotts.discovery.llm import LLMClient

        def llm_agent(search, seed):
            llm = {"model": args.llm_model, "base_url": args.llm_base_url}
            client = LLMClient(search.run, llm, os.environ.get("OPENAI_API_KEY"))
            return agent_search(search, AgentSettings(args.evaluations, seed=seed), client)

        methods[f"agent (LLM {args.llm_model})"] = llm_agent
    runs: dict[str, list[list[dict]]] = {name: [] for name in methods}
    start = time.perf_counter()
    with (
        GraphEvaluator(CrossSpec("aime24"), args.seeds) as evaluator,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for name, search_with in methods.items():
            for seed in range(args.repeats):
                folder = Path(tmp) / f"{len(runs[name])}-{name.split()[0]}-{seed}-{hash(name)}"
                folder.mkdir()
                search = GraphSearch(RunDirectory(folder), evaluator, args.budget)
                runs[name].append(search_with(search, seed))
    best = max(r["objective"] for records in runs.values() for rs in records for r in rs)
    print(
        f"AIME24, {args.seeds} seeds, budget {args.budget:.3g} FLOPs/question, "
        f"{args.evaluations} evaluations × {args.repeats} search seeds per method "
        f"({time.perf_counter() - start:.0f} s); best objective found {best:.2f}"
    )
    print("| method | evaluations to 95 % (median; per seed) | to 99 % | best found (mean) |")
    print("|---|---|---|---:|")
    for name, records in runs.items():
        cells = []
        for share in (0.95, 0.99):
            reach = [evaluations_to_reach(rs, share * best) for rs in records]
            finite = [n if n else args.evaluations + 1 for n in reach]
            shown = ", ".join(str(n) if n else f">{args.evaluations}" for n in reach)
            cells.append(f"{statistics.median(finite):g}; {shown}")
        found = statistics.mean(max(r["objective"] for r in rs) for rs in records)
        print(f"| {name} | {cells[0]} | {cells[1]} | {found:.2f} |")


if __name__ == "__main__":
    main()
