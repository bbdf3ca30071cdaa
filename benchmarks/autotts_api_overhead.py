"""AutoTTS-API methods on replay: the reference's own evaluator vs autotts's adapter.

Runs a method file written for the AutoTTS paper's API (default: CMC, ``OptimalController``
of ``../shared/autotts-api/cmc_method.py``) on one shipped store twice, in one process each:
with the reference's ``Question`` (``../shared/autotts-api/data_loader.py``, read from there)
called directly, and through :mod:`autotts.loading.autotts_paper_api` (each call one action of the replay
engine, the method in a greenlet). Prints both wall times, their ratio, and whether accuracy
and mean tokens agree.

    python benchmarks/autotts_api_overhead.py [--store Qwen3-8B/aime25] [--seeds 10]
                                              [--method FILE:Class] [--beta 0.5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
API = SHARED / "autotts-api"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"reference_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def reference_run(question_class, method, records: list, seeds: int):
    """Accuracy (%) and mean tokens as the reference's ``ModelandTask.evaluate`` counts them."""
    correct = cost = 0
    for seed in range(seeds):
        for info in records:
            is_correct, tokens = question_class(info, seed=seed).solve(method)
            correct += bool(is_correct)
            cost += tokens
    episodes = seeds * len(records)
    return 100 * correct / episodes, cost / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="Qwen3-8B/aime25")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--method", default=f"{API / 'cmc_method.py'}:OptimalController")
    parser.add_argument("--beta", type=float, default=0.5)
    args = parser.parse_args()

    import autotts

    file, _, class_name = args.method.rpartition(":")
    store = SHARED / "environments" / f"{args.store}.json"
    records = json.loads(store.read_text(encoding="utf-8"))

    question_class = _module(API / "data_loader.py").Question  # imports outside the timing
    method = getattr(_module(Path(file)), class_name)(config={"beta": args.beta})
    start = time.perf_counter()
    ref_accuracy, ref_tokens = reference_run(question_class, method, records, args.seeds)
    reference_s = time.perf_counter() - start

    start = time.perf_counter()
    report = autotts.evaluate(
        args.method,
        args.store,
        betas=[args.beta],
        seeds=args.seeds,
        env_dir=SHARED / "environments",
        workers=1,
        trace_seeds=0,
    )
    adapter_s = time.perf_counter() - start
    row = report.rows[0]

    episodes = args.seeds * len(records)
    print(f"{args.method} β={args.beta} on {args.store}, {episodes} episodes, one process each")
    print(f"  reference evaluator: {reference_s:6.1f} s  accuracy {ref_accuracy:.2f}  "
          f"tokens {ref_tokens:,.0f}")  # fmt: skip
    print(f"  autotts adapter:     {adapter_s:6.1f} s  accuracy {row.accuracy:.2f}  "
          f"tokens {row.tokens:,.0f}  ({row.status})")  # fmt: skip
    print(f"  (the accuracy with its uncertainty, paired over questions and seeds: "
          f"{row.accuracy_text} %, 95 % interval {row.interval_text})")  # fmt: skip
    print(f"  adapter / reference time: {adapter_s / reference_s:.2f}x; results identical: "
          f"{abs(ref_accuracy - row.accuracy) < 1e-9 and abs(ref_tokens - row.tokens) < 1e-6}")  # fmt: skip


if __name__ == "__main__":
    main()
