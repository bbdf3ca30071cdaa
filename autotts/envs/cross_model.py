"""Cross-model replay: one question, the pre-collected branches of several models, and a price
for every generated token.

The shipped stores hold four models answering the same questions. A cross-model environment
joins them into one width-depth MDP in which ``Branch(k, model=M)`` / ``Read(k, model=M)``
open the next ``k`` branches *of model M* (each model's branches in its own reference order
for the seed, so spending on one model alone replays exactly its single-model environment).
Every generated token is priced by its model through a :class:`CostModel`: FLOPs
(≈ 2 × parameters per generated token) or dollars (a configurable price per token). Results
always carry raw tokens, per-model tokens and the cost.

Questions are matched across stores by their text (whitespace-normalised); stores that do
not hold the same questions, disagree on a gold answer, or use different probe intervals are
refused with :class:`~autotts.envs.stores.StoreError` naming the store and the question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.contract import ActionError
from ..core.engine import DEFAULT_MAX_STEPS
from ..core.environment import EpisodeRunner
from ..utils.atomic_files import read_yaml_or_json
from .replay import ReplayEnvironment, _Episode
from .stores import StoreError, list_environments

# Total parameters from the Qwen3 model cards (embeddings included).
QWEN3_PARAMETERS = {
    "Qwen3-0.6B": 0.6e9,
    "Qwen3-1.7B": 1.7e9,
    "Qwen3-4B": 4.0e9,
    "Qwen3-8B": 8.2e9,
}


class ModelPrice(BaseModel):
    """What one model costs: its parameter count (for FLOPs) and/or $ per million tokens."""

    model_config = ConfigDict(extra="forbid")

    parameters: Annotated[float, Field(gt=0)] | None = None
    usd_per_million_tokens: Annotated[float, Field(ge=0)] | None = None


class CostModel(BaseModel):
    """How generated tokens are priced. ``unit="flops"`` charges 2 × parameters per token
    (the forward-pass estimate), ``unit="usd"`` the configured price per token. Load a table
    with :meth:`load` (YAML or JSON: ``{unit: flops, models: {NAME: {parameters: 8.2e9}}}``)."""

    model_config = ConfigDict(extra="forbid")

    unit: Literal["flops", "usd"] = "flops"
    models: dict[str, ModelPrice] = Field(
        default_factory=lambda: {m: ModelPrice(parameters=p) for m, p in QWEN3_PARAMETERS.items()}
    )

    def per_token(self, model: str) -> float:
        """The cost of one generated token of ``model``, or a clear error."""
        price = self.models.get(model)
        if price is None:
            raise StoreError(
                f"model {model!r} has no entry in the cost table (known: "
                f"{', '.join(sorted(self.models)) or 'none'}); add it to the cost table"
            )
        if self.unit == "flops":
            if price.parameters is None:
                raise StoreError(f"model {model!r}: the cost table gives no 'parameters'")
            return 2.0 * price.parameters
        if price.usd_per_million_tokens is None:
            raise StoreError(f"model {model!r}: the cost table gives no 'usd_per_million_tokens'")
        return price.usd_per_million_tokens / 1e6

    @classmethod
    def load(cls, path: str | Path) -> CostModel:
        """Read a cost table (``.yaml``/``.yml`` or ``.json``); errors name the file and field."""
        data = read_yaml_or_json(path, StoreError, "cost table")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "top level"
            raise StoreError(f"{path}: field {where}: {first['msg']}") from None


def _normalise(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class CrossQuestion:
    """One question and where each model's store holds it."""

    text: str
    delta: int
    index: dict[str, int]  # model -> question index in that model's store


class CrossModelEnvironment(EpisodeRunner):
    """Several models' replay stores of one dataset joined into one environment (see the
    module docstring). ``run_episode`` plays one (question, seed) episode; its result's
    ``cost`` and ``model_tokens`` hold the spending."""

    def __init__(
        self,
        dataset: str,
        stores: Sequence[ReplayEnvironment],
        cost_model: CostModel | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        branch_limit: int | None = None,
    ):
        if not stores:
            raise StoreError("a cross-model environment needs at least one model's store")
        self.dataset = dataset
        self.stores = {env.model: env for env in stores}
        if len(self.stores) != len(stores):
            raise StoreError(f"a model is listed twice: {[env.model for env in stores]}")
        self.models = tuple(self.stores)
        self.env_id = f"{'+'.join(self.models)}/{dataset}"
        self.cost_model = cost_model or CostModel()
        self.rates = {m: self.cost_model.per_token(m) for m in self.models}
        self.max_steps = max_steps
        self.branch_limit = branch_limit
        self.questions = _match_questions(stores)

    @classmethod
    def load(
        cls,
        dataset: str,
        models: Sequence[str] | None = None,
        env_dir=None,
        cost_model: CostModel | None = None,
        **kwargs,
    ) -> CrossModelEnvironment:
        """The stores ``MODEL/dataset`` of ``models`` (default: every model that has one)."""
        if models is None:
            models = dataset_models(dataset, env_dir)
        stores = [ReplayEnvironment.load(f"{m}/{dataset}", env_dir) for m in models]
        return cls(dataset, stores, cost_model, **kwargs)

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def unit(self) -> str:
        return self.cost_model.unit

    def gold(self, question: int) -> str:
        """Gold answer (scoring and reports only; never reaches a controller)."""
        model, index = next(iter(self.questions[question].index.items()))
        return self.stores[model].gold(index)

    def is_correct(self, question: int, answer: str | None) -> bool:
        return answer is not None and answer == self.gold(question)

    def episode_source(self, question: int, seed: int) -> tuple:
        """The episode class and its arguments for ``(question, seed)`` (see
        :meth:`ReplayEnvironment.episode_source`)."""
        q = self.questions[question]
        orders = {m: self.stores[m]._episode_order(i, seed) for m, i in q.index.items()}
        return (_CrossEpisode, q, orders, self.rates, self.branch_limit)


def dataset_models(dataset: str, env_dir=None) -> list[str]:
    """Every model with a store of ``dataset``."""
    ids = [info.env_id.split("/") for info in list_environments(env_dir)]
    models = [model for model, name in ids if name == dataset]
    if not models:
        raise StoreError(f"no store of dataset {dataset!r} found")
    return models


def _match_questions(stores: Sequence[ReplayEnvironment]) -> list[CrossQuestion]:
    """Questions of the first store, located in every other store by text."""
    first = stores[0]
    by_text = []
    for env in stores:
        if env.width_only:
            raise StoreError(
                f"{env.env_id} is a width-only store (no probe answers); fill them in with "
                "`autotts envs probe` before combining it with other models"
            )
        texts: dict[str, int] = {}
        for i, q in enumerate(env.questions):
            key = _normalise(q.text)
            if key in texts:
                raise StoreError(
                    f"{env.env_id}: questions {texts[key]} and {i} have the same text; "
                    "questions are matched across models by text, so each must be unique"
                )
            texts[key] = i
        by_text.append(texts)
    for env, texts in zip(stores[1:], by_text[1:], strict=True):
        missing = set(by_text[0]) - set(texts)
        extra = set(texts) - set(by_text[0])
        for gap, here, there in ((missing, first, env), (extra, env, first)):
            if gap:
                text = sorted(gap)[0]
                raise StoreError(
                    f"{there.env_id} does not hold every question of {here.env_id} "
                    f"({len(gap)} missing, e.g. {text[:70]!r}…); a cross-model environment "
                    "needs stores of the same questions (questions are matched by text)"
                )
    questions = []
    for i, q in enumerate(first.questions):
        key = _normalise(q.text)
        index = {env.model: texts[key] for env, texts in zip(stores, by_text, strict=True)}
        for env in stores[1:]:
            j = index[env.model]
            if env.gold(j) != first.gold(i):
                raise StoreError(
                    f"{env.env_id} question {j} and {first.env_id} question {i} have the same "
                    f"text but different gold answers ({env.gold(j)!r} vs {first.gold(i)!r})"
                )
            if env.questions[j].delta != q.delta:
                raise StoreError(
                    f"{env.env_id} probes every {env.questions[j].delta} tokens, "
                    f"{first.env_id} every {q.delta}; cross-model stores need one interval"
                )
        questions.append(CrossQuestion(q.text, q.delta, index))
    return questions


class _CrossEpisode(_Episode):
    """A replay episode over several models: per-branch data is appended as branches open
    (from the chosen model's order), and every token is priced by its branch's model."""

    __slots__ = ("orders", "next_of", "rates", "rate_of", "was_read", "cost", "model_tokens")

    def __init__(self, q: CrossQuestion, orders: dict, rates: dict, limit: int | None):
        self.orders, self.rates = orders, rates
        self.next_of = dict.fromkeys(orders, 0)
        total = sum(len(order[1]) for order in orders.values())
        super().__init__(q, ((), [], [], []), 0, None, "")
        self.max_branches = self.state.max_branches = total if limit is None else min(total, limit)
        self.state.models = tuple(orders)
        self.state.cost_per_token = dict(rates)
        self.state.cost = self.cost = 0.0
        self.rate_of: list[float] = []
        self.was_read: list[bool] = []
        self.model_tokens = dict.fromkeys(orders, 0)

    def _reserve(self, k, model) -> tuple[int, int]:
        if model not in self.orders:
            raise ActionError(
                f"model {model!r} is not in this environment; name one of state.models "
                f"{list(self.orders)} (e.g. Branch(4, model={next(iter(self.orders))!r}))"
            )
        self.model = model  # the model the base class records for the new branches
        start, end = super()._reserve(k, model)
        probes, lengths, totals, finals = self.orders[model][:4]
        j = self.next_of[model]
        if j + k > len(lengths):
            raise ActionError(
                f"cannot open {k} more {model} branches: {j} of its {len(lengths)} are open"
            )
        self.next_of[model] = j + k
        self.probes += probes[j : j + k]
        self.lengths.extend(lengths[j : j + k])
        self.totals.extend(totals[j : j + k])
        self.final_of.extend(finals[j : j + k])
        self.rate_of.extend([self.rates[model]] * k)
        return start, end

    def _spent(self, i: int) -> int:
        """Tokens branch ``i`` has generated so far (see ``_Episode._finish``)."""
        if not self.done[i]:
            return self.depth[i] * self.delta
        if self.was_read[i]:
            return self.totals[i]
        return max(self.totals[i], self.lengths[i] * self.delta)

    def _price(self, charged: dict[int, int]) -> None:
        """Price the tokens just charged to each branch (id -> tokens) at its model's rate."""
        models = self.state.model
        for i, extra in charged.items():
            self.cost += extra * self.rate_of[i]
            self.model_tokens[models[i]] += extra
        self.state.cost = self.cost

    def open(self, k, model=None) -> range:
        ids = super().open(k, model)
        self.was_read.extend([False] * k)
        return ids

    def extend(self, ids, k, probe: bool) -> None:
        n = len(self.live)
        before = {i: self._spent(i) for i in ids if type(i) is int and 0 <= i < n}
        super().extend(ids, k, probe)
        self._price({i: self._spent(i) - spent for i, spent in before.items()})

    def charge_again(self, i) -> None:
        before = self.tokens
        super().charge_again(i)
        self._price({i: self.tokens - before})  # (not generated again: _spent stays)

    def read(self, k, model=None) -> range:
        ids = super().read(k, model)
        self.was_read.extend([True] * k)
        self._price({i: self._spent(i) for i in ids})
        return ids


__all__ = [
    "CostModel",
    "CrossModelEnvironment",
    "ModelPrice",
    "QWEN3_PARAMETERS",
]
