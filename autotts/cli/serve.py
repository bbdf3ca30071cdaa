"""``autotts serve``: served controllers behind an OpenAI-compatible endpoint
(:mod:`autotts.serving`), on vLLM in this process or any OpenAI-compatible server.

(No ``from __future__ import annotations``: typer reads option types at definition time.)
"""

from dataclasses import replace
from typing import Annotated

import typer

from ..sandbox.limits import EPISODE_LIMITS
from ..serving.schema import MAX_REQUEST_TOKENS
from .common import _fail, err_console
from .live import (
    ApiKeyOption,
    BackendOption,
    BaseUrlOption,
    DeltaOption,
    EagerOption,
    EngineArgOption,
    GpuMemOption,
    MaxBranchOption,
    MaxModelLenOption,
    MinPOption,
    ModelOption,
    ProbeTokensOption,
    SeedOption,
    SuffixOption,
    TemperatureOption,
    ThinkingOption,
    TopKOption,
    TopPOption,
    TPOption,
    _settings,
    make_backend,
)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        controllers: Annotated[
            list[str],
            typer.Argument(
                help="Controllers to serve: NAME_OR_FILE\\[@beta=B] (B: the default β of requests "
                "that name none); clients pick one by model name, e.g. cmc or cmc@beta=0.3."
            ),
        ],
        backend: BackendOption = "vllm",
        model: ModelOption = None,
        base_url: BaseUrlOption = None,
        api_key: ApiKeyOption = None,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
        max_in_flight: Annotated[
            int, typer.Option("--max-in-flight", min=1, help="Episodes running at once.")
        ] = 16,
        max_queue: Annotated[
            int,
            typer.Option("--max-queue", min=0, help="Requests waiting beyond those; more get 429."),
        ] = 64,
        max_branches: Annotated[int, typer.Option("--max-branches", min=1)] = 64,
        max_request_tokens: Annotated[
            int,
            typer.Option(
                "--max-request-tokens",
                min=0,
                help="Tokens one request's episode may generate at most, branches and probes "
                "(0: no cap); a client's max_tokens lowers it for its request.",
            ),
        ] = MAX_REQUEST_TOKENS,
        sandbox_cpu_s: Annotated[
            float,
            typer.Option(
                "--sandbox-cpu-s",
                min=1.0,
                help="CPU seconds an LLM-written controller's worker may use for one request.",
            ),
        ] = EPISODE_LIMITS.cpu_s,
        delta: DeltaOption = 500,
        max_branch_tokens: MaxBranchOption = None,
        probe_tokens: ProbeTokensOption = 16,
        probe_suffix: SuffixOption = None,
        thinking: ThinkingOption = True,
        temperature: TemperatureOption = None,
        top_p: TopPOption = None,
        top_k: TopKOption = None,
        min_p: MinPOption = None,
        seed: SeedOption = 0,
        max_model_len: MaxModelLenOption = None,
        tensor_parallel_size: TPOption = 1,
        gpu_memory_utilization: GpuMemOption = None,
        enforce_eager: EagerOption = False,
        engine_arg: EngineArgOption = None,
    ):
        """Serve controllers as an OpenAI-compatible endpoint: one request is one live episode
        (POST /v1/chat/completions, /v1/completions; GET /v1/models, /health, /metrics)."""
        import importlib.util

        from pydantic import ValidationError

        missing = [m for m in ("fastapi", "uvicorn", "prometheus_client")
                   if importlib.util.find_spec(m) is None]  # fmt: skip
        if missing:
            raise _fail(f"autotts serve needs {', '.join(missing)}: pip install 'autotts[serve]' "
                        "(or the live extra, which brings them with vLLM)")  # fmt: skip

        from ..core.signals import TOP_LOGPROBS
        from ..errors import BadInput, RunFailure
        from ..live.backend import BackendError
        from ..serving import ServedControllers, app

        try:
            limits = replace(EPISODE_LIMITS, cpu_s=sandbox_cpu_s)
            served = ServedControllers(controllers, limits)
            # logprobs cost: asked for only where a served controller reads their signals (or
            # may: a sandboxed one's needs are known only inside its sandbox)
            reads = [s.controller.requires or s.sandboxed for s in served.served.values()]
            logprobs = TOP_LOGPROBS if any(reads) else 0
            settings = _settings(delta, max_branch_tokens, probe_tokens, probe_suffix, thinking,
                                 temperature, top_p, logprobs, top_k, min_p)  # fmt: skip
            engine = make_backend(backend, model, base_url, api_key, max_model_len,
                                  tensor_parallel_size, gpu_memory_utilization, enforce_eager,
                                  seed, engine_arg)  # fmt: skip
        except (BadInput, BackendError, RunFailure, ValidationError) as exc:
            raise _fail(str(exc)) from None
        import uvicorn

        application = app(served, engine, settings, seed=seed, max_in_flight=max_in_flight,
                          max_queue=max_queue, max_branches=max_branches,
                          max_request_tokens=max_request_tokens or None)  # fmt: skip
        err_console.print(
            f"serving {', '.join(served.names())} on http://{host}:{port}/v1 "
            f"({engine.name}: {engine.model})",
            highlight=False,
        )
        try:
            uvicorn.run(application, host=host, port=port, log_level="warning")
        finally:
            served.close()
            engine.close()


__all__ = ["register"]
