"""Several OpenAI-compatible servers of one model as one backend (``--base-url`` given more
than once): a question's prompt is given a server when it is made (the least used one), and
every request continuing that prompt — its branches, their probes — goes to the same server,
so that they share its prefix cache. A server that fails fails only the requests sent to it
(:class:`~autotts.live.backend.BatchFailure`); the others are answered. A server whose every
request failed is left out of new placements (and tried last for tokenizing) for
``REST_S`` seconds, then given new questions again."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .backend import BackendError, BatchFailure, Generation, GenerationBackend, GenerationRequest

MAX_PROMPTS = 20_000  # prompts remembered (least recently used dropped): bounded memory
REST_S = 10.0  # how long a server that failed whole is given no new question


TOKENIZER_CHECK = "Check: \\boxed{\\frac{12}{7}} + 30 = 42 ✓ — ÿ"


def _check_tokenizers(servers: Sequence[GenerationBackend]) -> None:
    """Refuse servers that tokenize alike texts differently (another tokenizer or chat
    template): a prompt made by one of them is continued, as token ids, by the others."""
    seen = {}
    for server in servers:
        try:
            made = (server.encode(TOKENIZER_CHECK), server.prompt(TOKENIZER_CHECK, None, None))
        except BackendError as exc:
            raise BackendError(
                f"{server.name} server {_where(server)} cannot tokenize: {exc}"
            ) from None
        seen.setdefault(made, []).append(_where(server))
    if len(seen) > 1:
        groups = " | ".join(", ".join(where) for where in seen.values())
        raise BackendError(
            f"the servers tokenize differently ({groups}): a pool needs one tokenizer and chat "
            "template (the same model and vLLM settings on every server)"
        )


def _where(server) -> str:
    return getattr(server, "base_url", server.name)


class ServerPool(GenerationBackend):
    """``servers`` (:class:`~autotts.live.server.OpenAIBackend`, one model) as one backend;
    ``stats`` adds theirs up, and ``placed`` counts the prompts each server was given."""

    name = "openai"

    def __init__(self, servers: Sequence[GenerationBackend]):
        super().__init__()
        if not servers:
            raise BackendError("a server pool needs at least one server")
        models = {s.model for s in servers}
        if len(models) != 1:
            raise BackendError(f"the servers serve different models ({sorted(models)}): a pool "
                               "serves one model")  # fmt: skip
        self.servers = list(servers)
        self.model = servers[0].model
        _check_tokenizers(self.servers)
        lengths = [s.max_model_len for s in servers if s.max_model_len]
        self.max_model_len = min(lengths) if lengths else 0
        self.placed = [0] * len(servers)
        self._home: OrderedDict[tuple | str, int] = OrderedDict()
        self._lengths: dict[int, int] = {}  # prompt length → how many remembered prompts
        self._threads = ThreadPoolExecutor(max_workers=len(servers))
        self._lock = threading.Lock()  # prompts are made by many request threads at once
        self.resting_until = [0.0] * len(servers)  # monotonic time: failed whole until then

    def _by_health(self) -> list[int]:
        """Servers in the order to try them: those not resting first, fewest prompts first."""
        now = time.monotonic()
        return sorted(range(len(self.servers)),
                      key=lambda i: (self.resting_until[i] > now, self.placed[i], i))  # fmt: skip

    def prompt(self, user_message, system=None, thinking=None):
        for index in self._by_health():  # any of them tokenizes alike; a failing one is skipped
            try:
                made = self.servers[index].prompt(user_message, system, thinking)
                break
            except BackendError as exc:
                failure = exc
                self.resting_until[index] = time.monotonic() + REST_S
        else:
            raise failure
        with self._lock:
            if made not in self._home:
                self._remember(made, self._by_health()[0])
            self._home.move_to_end(made)
        return made

    def _remember(self, prompt, server: int) -> None:
        self._home[prompt] = server
        self.placed[server] += 1
        self._lengths[len(prompt)] = self._lengths.get(len(prompt), 0) + 1
        while len(self._home) > MAX_PROMPTS:
            old, _ = self._home.popitem(last=False)
            self._lengths[len(old)] -= 1
            if not self._lengths[len(old)]:
                del self._lengths[len(old)]

    def encode(self, text):
        return self.servers[0].encode(text)

    def sampling_defaults(self):
        return self.servers[0].sampling_defaults()

    def versions(self) -> dict[str, str]:
        return {**self.servers[0].versions(), "server": ", ".join(
            s.versions().get("server", "?") for s in self.servers)}  # fmt: skip

    def server_of(self, request: GenerationRequest) -> int:
        """The server of the longest remembered prompt ``request`` continues (the first server
        for a prefix no prompt of this pool began)."""
        prefix = request.prefix
        with self._lock:
            for length in sorted(self._lengths, reverse=True):
                if length <= len(prefix):
                    server = self._home.get(prefix[:length])
                    if server is not None:
                        return server
        return 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        groups: dict[int, list[int]] = {}
        for n, request in enumerate(requests):
            groups.setdefault(self.server_of(request), []).append(n)
        calls = {
            server: self._threads.submit(self.servers[server].generate, [requests[n] for n in ns])
            for server, ns in groups.items()
        }
        out: list = [None] * len(requests)
        failures: dict[int, BackendError] = {}
        for server, call in calls.items():
            positions = groups[server]
            try:
                answers = call.result()
            except BatchFailure as exc:
                answers = exc.partial
                failures.update({positions[i]: e for i, e in exc.failures.items()})
                if len(exc.failures) == len(positions):
                    self.resting_until[server] = time.monotonic() + REST_S
            except BackendError as exc:
                answers = [None] * len(positions)
                failures.update(dict.fromkeys(positions, exc))
                self.resting_until[server] = time.monotonic() + REST_S
            for n, answer in zip(positions, answers, strict=True):
                out[n] = answer
        self._add_up(len(requests))
        if failures:
            raise failures[0] if len(requests) == 1 else BatchFailure(failures, out)
        return out

    def _add_up(self, batch: int) -> None:
        """One call of the pool (its batch, whatever the servers made of it), and the
        servers' counts of requests and tokens added up."""
        totals = self.stats
        totals.calls += 1
        totals.batch_sizes.append(batch)
        for name in ("requests", "prompt_tokens", "cached_prompt_tokens", "generated_tokens",
                     "aborted"):  # fmt: skip
            setattr(totals, name, sum(getattr(s.stats, name) for s in self.servers))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        for server in self.servers:
            server.close()


def server_pool(urls: Sequence[str], model: str | None, api_key: str | None) -> ServerPool:
    """A pool of the completions servers at ``urls`` (raises BackendError, leaving none of
    the backends it made with threads running)."""
    from .server import OpenAIBackend

    servers: list = []
    try:
        for url in urls:
            servers.append(OpenAIBackend(url, model, api_key))
        return ServerPool(servers)
    except BackendError:
        for server in servers:
            server.close()
        raise
