"""``autotts envs import`` and ``autotts envs probe``: stores from sample dumps.

(No ``from __future__ import annotations``: typer reads option types at definition time.)
"""

from pathlib import Path
from typing import Annotated

import typer

from .common import EnvDirOption, _fail, console
from .live import (
    ApiKeyOption,
    BackendOption,
    BaseUrlOption,
    EagerOption,
    EngineArgOption,
    GpuMemOption,
    MaxModelLenOption,
    ModelOption,
    ProbeTokensOption,
    SuffixOption,
    ThinkingOption,
    TPOption,
    make_backend,
)


def _store_path(out: Path) -> Path:
    if out.suffix != ".json":
        raise _fail(f"--out {out}: give the store file, e.g. ENV_DIR/MyModel/mydata.json")
    return out


def register(envs_app: typer.Typer) -> None:
    """Add ``import`` and ``probe`` to the ``envs`` commands."""

    @envs_app.command("import")
    def envs_import(
        dumps: Annotated[
            list[Path],
            typer.Argument(help="Dump files (JSON lines or a JSON array; .gz too), read in order."),
        ],
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Store to write: ENV_DIR/MODEL/DATASET.json.")
        ],
        fmt: Annotated[
            str | None,
            typer.Option(
                "--format",
                help="samples, lm-eval, openai or vllm (default: from the first record).",
            ),
        ] = None,
        questions: Annotated[
            str | None,
            typer.Option(
                "--questions",
                help="Question/answer per dump line, in order (JSONL file or "
                "replay:MODEL/DATASET), for dumps that do not carry them.",
            ),
        ] = None,
        tokenizer: Annotated[
            str | None,
            typer.Option(
                "--tokenizer",
                help="Hugging Face tokenizer (the model's directory or id) to count the tokens "
                "of samples the dump gives no count for.",
            ),
        ] = None,
        delta: Annotated[
            int, typer.Option("--delta", min=1, help="Δ that `envs probe` will cut at.")
        ] = 500,
        env_dir: EnvDirOption = None,
    ) -> None:
        """Turn sample dumps into a width-only replay store (no probe answers yet)."""
        from ..envs.sample_import import import_dumps, load_tokenizer
        from ..errors import BadInput
        from ..live.questions import load_questions

        try:
            items = load_questions(questions, env_dir) if questions else None
            counter = load_tokenizer(tokenizer) if tokenizer else None
            path = import_dumps(dumps, _store_path(out), fmt, items, counter, delta, tokenizer)
        except BadInput as exc:
            raise _fail(str(exc)) from None
        from ..envs.stores import load_records

        records = load_records(path)
        n = sum(len(r.each_branch) for r in records)
        console.print(
            f"wrote {path}: {len(records)} questions, {n} samples, width-only (whole samples; "
            f"probe answers: autotts envs probe {path} --model MODEL)"
        )

    @envs_app.command("probe")
    def envs_probe(
        store: Annotated[Path, typer.Argument(help="An imported store (with its texts).")],
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Where to write (default: in place).")
        ] = None,
        backend: BackendOption = "vllm",
        model: ModelOption = None,
        base_url: BaseUrlOption = None,
        api_key: ApiKeyOption = None,
        delta: Annotated[
            int | None,
            typer.Option("--delta", min=1, help="Tokens per interval (default: the store's)."),
        ] = None,
        probe_tokens: ProbeTokensOption = 16,
        probe_suffix: SuffixOption = None,
        thinking: ThinkingOption = True,
        max_model_len: MaxModelLenOption = None,
        tensor_parallel_size: TPOption = 1,
        gpu_memory_utilization: GpuMemOption = None,
        enforce_eager: EagerOption = False,
        engine_arg: EngineArgOption = None,
    ) -> None:
        """Fill in an imported store's probe answers from its texts (resumable)."""
        from ..envs.stores import load_records
        from ..errors import AutoTTSError
        from ..live.probing import probe_store
        from ..live.settings import LiveSettings

        try:
            first = load_records(store)[0]
            extra = {"probe_suffix": probe_suffix} if probe_suffix is not None else {}
            settings = LiveSettings(
                delta=delta or first.probe_freq, probe_tokens=probe_tokens, thinking=thinking,
                **extra,
            )  # fmt: skip
            engine = make_backend(
                backend, model, base_url, api_key, max_model_len, tensor_parallel_size,
                gpu_memory_utilization, enforce_eager, 0, engine_arg,
            )  # fmt: skip
        except AutoTTSError as exc:
            raise _fail(str(exc)) from None

        def progress(done, total, seconds):
            console.print(f"question {done}/{total} probed in {seconds:.1f} s")

        try:
            path = probe_store(engine, store, out and _store_path(out), settings, progress)
        except AutoTTSError as exc:
            raise _fail(f"{exc} (probed questions are kept; rerun to resume)", 1) from None
        finally:
            engine.close()
        import json

        from ..envs.stores import meta_path

        meta = json.loads(meta_path(path).read_text())
        console.print(
            f"wrote {path}: {meta['probe_cost']['probes']:,} probes generated "
            f"{meta['generated_tokens']:,} tokens; build-env would generate "
            f"{meta['build_env_generated_tokens']:,} "
            f"(ratio {meta['generated_ratio_vs_build_env']:.4f})"
        )
