"""CLI commands of the live backend: ``build-env`` and ``validate``.

(No ``from __future__ import annotations``: typer reads option types at definition time.)
"""

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from .common import EnvDirOption, _fail, console, err_console
from .validation_report import print_validation

BackendOption = Annotated[
    str, typer.Option("--backend", help="vllm (engine in this process) or openai (a server).")
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="Model path or id (vllm); served model name (openai)."),
]
BaseUrlOption = Annotated[
    list[str] | None,
    typer.Option(
        "--base-url",
        help="Server URL for --backend openai (…/v1); given several times, a pool of servers "
        "of one model (each question's requests stay on one server, for its prefix cache).",
    ),
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", help="API key (default: $OPENAI_API_KEY).")
]
QuestionsOption = Annotated[
    str,
    typer.Option("--questions", help="JSONL file with question/answer, or replay:MODEL/DATASET."),
]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, help="First N questions.")]
DeltaOption = Annotated[int, typer.Option("--delta", min=1, help="Tokens per interval (Δ).")]
MaxBranchOption = Annotated[
    int | None,
    typer.Option(
        "--max-branch-tokens",
        min=1,
        help="Token limit of one branch (default: all the model's context leaves; a limit that "
        "does not fit is an error).",
    ),
]
ProbeTokensOption = Annotated[
    int, typer.Option("--probe-tokens", min=1, help="Greedy tokens decoded per probe.")
]
SuffixOption = Annotated[
    str | None, typer.Option("--probe-suffix", help="Answer-forcing suffix appended to probe.")
]
ThinkingOption = Annotated[
    bool, typer.Option("--thinking/--no-thinking", help="enable_thinking in the chat template.")
]
_DEFAULT = "default: the model's generation config"
TemperatureOption = Annotated[float | None, typer.Option("--temperature", min=0.0, help=_DEFAULT)]
TopPOption = Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help=_DEFAULT)]
TopKOption = Annotated[int | None, typer.Option("--top-k", min=-1, help=_DEFAULT)]
MinPOption = Annotated[float | None, typer.Option("--min-p", min=0.0, max=1.0, help=_DEFAULT)]
SeedOption = Annotated[int, typer.Option("--seed", help="Sampling seed.")]
LogprobsOption = Annotated[
    int,
    typer.Option(
        "--logprobs",
        min=0,
        max=20,
        help="Top log-probabilities per token, summarised per interval as the confidence "
        "signals DeepConf reads (0: none).",
    ),
]
MaxModelLenOption = Annotated[
    int | None, typer.Option("--max-model-len", help="vLLM max_model_len (default: model's).")
]
TPOption = Annotated[
    int, typer.Option("--tensor-parallel-size", "-tp", min=1, help="vLLM tensor parallelism.")
]
GpuMemOption = Annotated[
    float | None,
    typer.Option("--gpu-memory-utilization", help="vLLM fraction of GPU memory (e.g. 0.9)."),
]
EagerOption = Annotated[
    bool, typer.Option("--enforce-eager/--no-enforce-eager", help="vLLM: no CUDA graphs.")
]
EngineArgOption = Annotated[
    list[str] | None,
    typer.Option(
        "--engine-arg",
        help="KEY=VALUE passed to vllm.LLM (repeatable), e.g. kv_cache_dtype=fp8, "
        "max_num_seqs=256, swap_space=16.",
    ),
]


def make_backend(
    backend, model, base_url, api_key, max_model_len, tp, gpu_mem, eager, seed, engine_args=(),
    streaming=False,
):  # fmt: skip
    """The backend the options describe (raises BackendError with a clear message);
    ``streaming``: the streaming store builder on vLLM's async engine instead."""
    from ..live.backend import BackendError, VLLMBackend
    from ..live.server import OpenAIBackend
    from ..loading.run_configs import parse_value

    extra = {}
    for item in engine_args or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BackendError(
                f"--engine-arg {item!r}: expected KEY=VALUE (e.g. kv_cache_dtype=fp8)"
            )
        extra[key.strip().replace("-", "_")] = parse_value(value)
    if backend == "vllm":
        if not model:
            raise BackendError("--backend vllm needs --model (a local path or a model id)")
        args = {"tensor_parallel_size": tp, "enforce_eager": eager}
        if max_model_len:
            args["max_model_len"] = max_model_len
        if gpu_mem:
            args["gpu_memory_utilization"] = gpu_mem
        args.update(extra)  # vllm.LLM / EngineArgs keywords, passed through as given
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if streaming:
            from ..live.streaming import StreamingBuilder

            return StreamingBuilder(model, seed=seed, **args)
        return VLLMBackend(model, seed=seed, **args)
    if backend == "openai":
        if streaming:
            raise BackendError("--streaming builds with vLLM's engine in this process "
                               "(--backend vllm)")  # fmt: skip
        if extra:
            raise BackendError("--engine-arg configures the in-process engine (--backend vllm); "
                               "give a server its arguments where it is started")  # fmt: skip
        urls = [base_url] if isinstance(base_url, str) else list(base_url or ())
        if not urls:
            raise BackendError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        if len(urls) == 1:
            return OpenAIBackend(urls[0], model, api_key)
        from ..live.server_pool import server_pool

        return server_pool(urls, model, api_key)
    raise BackendError(f"unknown backend {backend!r}; use vllm or openai")


def _settings(
    delta, max_branch_tokens, probe_tokens, probe_suffix, thinking, temperature, top_p, logprobs,
    top_k, min_p,
):  # fmt: skip
    from ..live.settings import LiveSettings

    extra = {"probe_suffix": probe_suffix} if probe_suffix is not None else {}
    return LiveSettings(
        delta=delta,
        max_branch_tokens=max_branch_tokens,
        probe_tokens=probe_tokens,
        thinking=thinking,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        min_p=min_p,
        logprobs=logprobs,
        **extra,
    )


def _open_live(_fail, questions, env_dir, limit, settings_args, backend_args):
    """Questions, settings and a started backend for a live command, or a clear exit."""
    from ..live.backend import BackendError
    from ..live.questions import QuestionsError, load_questions

    try:
        items = load_questions(questions, env_dir, limit)
    except QuestionsError as exc:
        raise _fail(str(exc)) from None
    settings = _settings(*settings_args)
    try:
        return items, settings, make_backend(*backend_args)
    except BackendError as exc:
        raise _fail(str(exc), 1) from None


def register(app: typer.Typer) -> None:
    """Add the live commands to the ``autotts`` app (called by :mod:`autotts.cli`)."""

    @app.command("build-env")
    def build_env(
        questions: QuestionsOption,
        out: Annotated[
            Path,
            typer.Option(
                "--out", "-o", help="Store to write: ENV_DIR/MODEL/DATASET.json (resumable)."
            ),
        ],
        backend: BackendOption = "vllm",
        model: ModelOption = None,
        base_url: BaseUrlOption = None,
        api_key: ApiKeyOption = None,
        n: Annotated[int, typer.Option("-n", min=1, help="Branches per question.")] = 128,
        delta: DeltaOption = 500,
        max_branch_tokens: MaxBranchOption = None,
        probe_tokens: ProbeTokensOption = 16,
        probe_suffix: SuffixOption = None,
        thinking: ThinkingOption = True,
        temperature: TemperatureOption = None,
        top_p: TopPOption = None,
        top_k: TopKOption = None,
        min_p: MinPOption = None,
        logprobs: LogprobsOption = 20,
        seed: SeedOption = 0,
        limit: LimitOption = None,
        max_model_len: MaxModelLenOption = None,
        tensor_parallel_size: TPOption = 1,
        gpu_memory_utilization: GpuMemOption = None,
        enforce_eager: EagerOption = False,
        engine_arg: EngineArgOption = None,
        streaming: Annotated[
            bool,
            typer.Option(
                "--streaming/--stepwise",
                help="Each branch one streamed generation, probes forked at interval ends, "
                "several questions in flight (vLLM's async engine); stepwise: every interval a "
                "batch barrier.",
            ),
        ] = False,
        questions_in_flight: Annotated[
            int, typer.Option(min=1, help="--streaming: questions sampled at the same time.")
        ] = 4,
        env_dir: EnvDirOption = None,
    ) -> None:
        """Sample N branches per question live and write a replay store (resumable)."""
        from ..live.backend import BackendError
        from ..live.builder import BuildError, build_environment

        if out.suffix != ".json":
            raise _fail(f"--out {out}: give the store file, e.g. ENV_DIR/MyModel/mydata.json")
        items, settings, engine = _open_live(
            _fail, questions, env_dir, limit,
            (delta, max_branch_tokens, probe_tokens, probe_suffix, thinking, temperature, top_p,
             logprobs, top_k, min_p),
            (backend, model, base_url, api_key, max_model_len, tensor_parallel_size,
             gpu_memory_utilization, enforce_eager, seed, engine_arg, streaming),
        )  # fmt: skip

        def progress(done, total, seconds):
            console.print(f"question {done}/{total}: {n} branches in {seconds:.1f} s")

        try:
            if streaming:
                path = engine.build(items, out, n, settings, seed, questions, questions_in_flight,
                                    progress)  # fmt: skip
            else:
                path = build_environment(
                    engine, items, out, n, settings, seed, source=questions, progress=progress
                )
        except (BackendError, BuildError) as exc:
            raise _fail(f"{exc} (finished questions are kept; rerun to resume)", 1) from None
        finally:
            engine.close()
        env_id = f"{path.parent.name}/{path.stem}"
        console.print(
            f"wrote {path} ({len(items)} questions × {n} branches); replay it with "
            f"autotts evaluate CONTROLLER --env {env_id} --env-dir {path.parent.parent}"
        )

    @app.command()
    def validate(
        controller: Annotated[
            str, typer.Argument(help="Controller name, .py file or collaboration graph file.")
        ],
        questions: QuestionsOption,
        backend: BackendOption = "vllm",
        model: ModelOption = None,
        base_url: BaseUrlOption = None,
        api_key: ApiKeyOption = None,
        beta: Annotated[float, typer.Option("--beta", min=0.0, max=1.0)] = 0.5,
        seeds: Annotated[int, typer.Option("--seeds", min=1, help="Live episodes/question.")] = 1,
        replay_env: Annotated[
            str | None,
            typer.Option(
                "--replay-env", help="Replay store of the same model (MODEL/DATASET) to predict."
            ),
        ] = None,
        max_branches: Annotated[int, typer.Option("--max-branches", min=1)] = 64,
        alias: Annotated[
            list[str] | None,
            typer.Option(
                "--alias",
                help="Another name of the served model that controllers may use (a graph's "
                "'Qwen3-8B' for Qwen/Qwen3-8B); repeatable.",
            ),
        ] = None,
        serve: Annotated[
            list[str] | None,
            typer.Option(
                "--serve",
                help="NAME=BASE_URL: a further model, served by an OpenAI-compatible server, "
                "that controllers open branches of as NAME (multi-model graphs); repeatable.",
            ),
        ] = None,
        delta: DeltaOption = 500,
        max_branch_tokens: MaxBranchOption = None,
        probe_tokens: ProbeTokensOption = 16,
        probe_suffix: SuffixOption = None,
        thinking: ThinkingOption = True,
        temperature: TemperatureOption = None,
        top_p: TopPOption = None,
        top_k: TopKOption = None,
        min_p: MinPOption = None,
        logprobs: LogprobsOption = 20,
        seed: SeedOption = 0,
        limit: LimitOption = None,
        max_model_len: MaxModelLenOption = None,
        tensor_parallel_size: TPOption = 1,
        gpu_memory_utilization: GpuMemOption = None,
        enforce_eager: EagerOption = False,
        engine_arg: EngineArgOption = None,
        episodes_in_flight: Annotated[
            int,
            typer.Option(
                min=1, help="Episodes played at once, their steps merged into shared batches."
            ),
        ] = 1,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Write results.json + traces.jsonl.")
        ] = None,
        env_dir: EnvDirOption = None,
    ) -> None:
        """Run a controller live and compare with its replay prediction on the same questions."""
        from ..errors import AutoTTSError
        from ..live.validation import validate_live
        from ..sandbox.sandboxed_controller import open_controller

        try:  # an LLM-written (marked) file plays every episode in the sandbox
            policy = open_controller(controller)
            params = policy.params(beta)
        except (AutoTTSError, ValueError) as exc:
            raise _fail(str(exc)) from None
        items, settings, engine = _open_live(
            _fail, questions, env_dir, limit,
            (delta, max_branch_tokens, probe_tokens, probe_suffix, thinking, temperature, top_p,
             logprobs, top_k, min_p),
            (backend, model, base_url, api_key, max_model_len, tensor_parallel_size,
             gpu_memory_utilization, enforce_eager, seed, engine_arg),
        )  # fmt: skip
        from ..live.backend import BackendError
        from ..live.server import OpenAIBackend

        others = {}
        try:
            for entry in serve or []:
                name, sep, url = entry.partition("=")
                if not sep or not name or not url:
                    raise BackendError(f"--serve expects NAME=BASE_URL, got {entry!r}")
                others[name] = OpenAIBackend(url, None, api_key)
            report = validate_live(
                engine, items, policy, params, settings, seeds, max_branches, replay_env, env_dir,
                aliases=alias or (), others=others, episodes_in_flight=episodes_in_flight,
            )  # fmt: skip
        except (BackendError, AutoTTSError) as exc:  # (a sandboxed replay prediction refused)
            raise _fail(str(exc)) from None
        finally:
            for closing in (engine, *others.values(), policy):  # (a sandboxed one's spare)
                getattr(closing, "close", lambda: None)()
        print_validation(
            report, f"{policy.name} β={beta} on {len(items)} questions ({engine.model})"
        )
        live = report["live"]
        if out is not None:
            from ..utils.atomic_files import atomic_write_text

            out.mkdir(parents=True, exist_ok=True)
            traces = report.pop("traces")
            atomic_write_text(out / "results.json", json.dumps(report, indent=2))
            atomic_write_text(out / "traces.jsonl", "".join(json.dumps(t) + "\n" for t in traces))
            console.print(f"wrote {out / 'results.json'} and {out / 'traces.jsonl'}")
        if live["errors"] == live["episodes"]:
            err_console.print(f"every live episode failed; first error: {live['first_error']}")
            raise typer.Exit(1)
