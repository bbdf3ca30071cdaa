"""``envs probe`` against ``build-env``: what completing an imported sample dump costs compared
with sampling the store from scratch.

Builds the tiny local model (or takes --model). The same questions, branch count, Δ, probe
length and branch limit go through both paths, each on its own vLLM engine with prefix
caching:

- ``build-env`` (the stepwise builder): samples every branch Δ tokens at a time and probes it
  after each interval;
- a dump of whole samples (vLLM ``n``-sample outputs, written as JSON the way a user would),
  ``envs import``-ed, then ``envs probe``: only the probes run, on the sampled token ids.

From the engines' own counts it prints, per path, generated tokens, prefilled tokens (prompt
minus prefix-cache hits) and wall seconds, then the ratios probe/build. Generated tokens are
the headline: a probe decodes ``--probe-tokens`` tokens while the build also generates every
branch token, so the ratio is about probe_tokens / (Δ + probe_tokens) whatever the model;
prefill and wall time depend on the engine and the hardware (on a GPU, run with
``--model Qwen/Qwen3-8B -n 128 --delta 500 --max-model-len 40960``).

    python benchmarks/probe_vs_build.py [--model DIR] [-n 16] [--questions 4] [--delta 32]
                                        [--max-branch-tokens 256] [--probe-tokens 6]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from _store_setup import store_parser, store_setup


def measure(make, run, label: str) -> dict:
    engine = make()
    try:
        start = time.perf_counter()
        run(engine)
        seconds = time.perf_counter() - start
    finally:
        engine.close()
    s = engine.stats
    row = {
        "generated": s.generated_tokens,
        "prefilled": s.prompt_tokens - s.cached_prompt_tokens,
        "seconds": seconds,
    }
    print(
        f"{label:>10}: {row['generated']:>9,} generated, {row['prefilled']:>9,} prefilled "
        f"({s.cached_prompt_tokens:,} of {s.prompt_tokens:,} prompt tokens cached), "
        f"{seconds:.1f} s",
        flush=True,
    )
    return row


def write_dump(engine, questions, settings, n: int, path: Path) -> None:
    """Whole samples as vLLM RequestOutputs in JSON (what `envs import` reads)."""
    from vllm import SamplingParams

    lines = []
    for q, item in enumerate(questions):
        prompt = engine.prompt(settings.user_message(item.question), None, settings.thinking)
        params = SamplingParams(
            n=n, max_tokens=settings.max_branch_tokens, temperature=settings.temperature, seed=q
        )
        (out,) = engine.llm.generate([{"prompt_token_ids": list(prompt)}], params, use_tqdm=False)
        lines.append({
            "question": item.question, "gold_answer": item.answer,
            "prompt_token_ids": list(out.prompt_token_ids),
            "outputs": [{"index": c.index, "text": c.text, "token_ids": list(c.token_ids),
                         "finish_reason": c.finish_reason} for c in out.outputs],
        })  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def main() -> None:
    args = store_parser(__doc__.splitlines()[0]).parse_args()
    work, model, questions, settings = store_setup(args, "autotts-probe-")

    from autotts.cli.live import make_backend
    from autotts.envs.sample_import import import_dumps
    from autotts.live.builder import build_environment
    from autotts.live.probing import probe_store

    def engine():
        return make_backend(
            "vllm", model, None, None, args.max_model_len, 1, None, True, 0, args.engine_arg
        )

    built = measure(
        engine,
        lambda e: build_environment(e, questions, work / "b" / "M" / "d.json", args.n, settings),
        "build-env",
    )
    dump = work / "dump.jsonl"
    sampler = engine()
    try:
        write_dump(sampler, questions, settings, args.n, dump)
    finally:
        sampler.close()
    store = import_dumps([dump], work / "p" / "M" / "d.json", delta=args.delta)
    probed = measure(engine, lambda e: probe_store(e, store, settings=settings), "envs probe")
    meta = json.loads(store.with_name("d.meta.json").read_text())
    ratio = probed["generated"] / max(1, built["generated"])
    print(
        f"generated tokens, envs probe / build-env: {ratio:.4f} (from the probed store's own "
        f"branch lengths: {meta['generated_ratio_vs_build_env']:.4f}); prefilled "
        f"{probed['prefilled'] / max(1, built['prefilled']):.3f}x; wall time "
        f"{probed['seconds'] / built['seconds']:.3f}x"
    )


if __name__ == "__main__":
    main()
