"""Store building: the streaming builder against the stepwise one, in prefill per generated token.

Builds the tiny local model (or takes --model) and samples the same questions twice, each
builder on its own vLLM engine with prefix caching: the stepwise builder (every interval one
batch per question, each continuation re-sending its prefix, then a probe batch) and the
streaming builder (one streamed generation per branch, probes forked from it, several
questions in flight). From the engines' own per-request numbers it prints, per builder,

- prompt tokens sent, of which served from the prefix cache, and generated tokens (branches
  and probes), and **prefilled tokens per generated token** ((prompt − cached) / generated);
- wall seconds, branch tokens per second, and the probes' share of the generated tokens,

then the ratios new/old. On this machine (tiny model, 4 questions × 16 branches, Δ = 32, 256
tokens, block size 32): stepwise 1.644, streaming 1.018 prefilled tokens per generated token
(0.62×), wall time 0.75×. On a GPU, the same command with ``--model Qwen/Qwen3-8B -n 128
--delta 500 --max-model-len 40960 --questions 30 --engine-arg ...`` measures the real case,
where the stepwise builder's prefixes also fall out of the KV cache.

    python benchmarks/builder_prefill.py [--model DIR] [-n 16] [--questions 4] [--delta 32]
                                         [--max-branch-tokens 256] [--temperature 1.0]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from _store_setup import store_parser, store_setup


def measure(make, build, label: str, probe_tokens: int) -> dict:
    engine = make()
    try:
        start = time.perf_counter()
        path = build(engine)
        seconds = time.perf_counter() - start
    finally:
        engine.close()
    s = engine.stats
    prefilled = s.prompt_tokens - s.cached_prompt_tokens
    records = json.loads(Path(path).read_text())
    branch_tokens = sum(b[1] for r in records for b in r["each_branch"])
    probes = sum(len(b[0]) for r in records for b in r["each_branch"])
    row = {
        "builder": label,
        "prompt": s.prompt_tokens,
        "cached": s.cached_prompt_tokens,
        "generated": s.generated_tokens,
        "prefill_per_generated": prefilled / max(1, s.generated_tokens),
        "seconds": seconds,
        "branch_tokens_per_s": branch_tokens / seconds,
        "probe_share": probes * probe_tokens / max(1, s.generated_tokens),
    }
    print(
        f"{label:>9}: {row['prompt']:>9,} prompt tokens ({row['cached']:,} cached), "
        f"{row['generated']:,} generated -> {row['prefill_per_generated']:.3f} prefilled per "
        f"generated token; {seconds:.1f} s, {row['branch_tokens_per_s']:,.0f} branch tokens/s, "
        f"probe decodes {100 * row['probe_share']:.1f} % of generated tokens",
        flush=True,
    )
    return row


def main() -> None:
    args = store_parser(__doc__.splitlines()[0]).parse_args()
    work, model, questions, settings = store_setup(args, "autotts-prefill-")

    from autotts.cli.live import make_backend
    from autotts.live.builder import build_environment

    def engine(streaming: bool):
        return lambda: make_backend(
            "vllm", model, None, None, args.max_model_len, 1, None, True, 0, args.engine_arg,
            streaming,
        )  # fmt: skip

    old = measure(
        engine(False),
        lambda e: build_environment(e, questions, work / "a" / "M" / "d.json", args.n, settings),
        "stepwise",
        settings.probe_tokens,
    )
    new = measure(
        engine(True),
        lambda e: e.build(questions, work / "b" / "M" / "d.json", args.n, settings),
        "streaming",
        settings.probe_tokens,
    )
    print(
        f"prefill per generated token: stepwise {old['prefill_per_generated']:.3f}, streaming "
        f"{new['prefill_per_generated']:.3f} (target <= 1.2), ratio new/old "
        f"{new['prefill_per_generated'] / max(old['prefill_per_generated'], 1e-9):.3f}; "
        f"wall time ratio new/old {new['seconds'] / old['seconds']:.3f}"
    )


if __name__ == "__main__":
    main()
