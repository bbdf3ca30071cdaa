"""What the store-building benchmarks share: their options and their setup (the tiny local
model unless --model is given, toy questions, settings)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def store_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=None, help="model dir or id (default: the tiny one)")
    parser.add_argument("-n", type=int, default=16, help="branches per question")
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--delta", type=int, default=32)
    parser.add_argument("--max-branch-tokens", type=int, default=256)
    parser.add_argument("--probe-tokens", type=int, default=6)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--engine-arg", action="append", default=[], help="KEY=VALUE for vLLM")
    return parser


def store_setup(args: argparse.Namespace, prefix: str):
    """``(work dir, model, questions, settings)`` for the parsed options."""
    if not args.engine_arg and args.model is None:
        # vLLM-CPU caches prefixes in blocks of 128 tokens: a probe at a 32-token boundary
        # could not reuse one; 32 is the smallest its attention accepts (GPUs default to 16)
        args.engine_arg = ["block_size=32"]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from autotts.live.live_environment import LiveQuestion
    from autotts.live.settings import LiveSettings

    work = Path(tempfile.mkdtemp(prefix=prefix))
    model = args.model
    if model is None:
        from autotts.live.tiny import build_tiny_model

        model = str(build_tiny_model(work / "tiny"))
    questions = [LiveQuestion(f"What is {i} + {i}?", str(2 * i)) for i in range(args.questions)]
    settings = LiveSettings(
        delta=args.delta, max_branch_tokens=args.max_branch_tokens,
        probe_tokens=args.probe_tokens, temperature=args.temperature,
    )  # fmt: skip
    print(
        f"{args.questions} questions x {args.n} branches, delta {args.delta}, up to "
        f"{args.max_branch_tokens} tokens per branch, {args.probe_tokens} tokens per probe, "
        f"model {model}",
        flush=True,
    )
    return work, model, questions, settings
