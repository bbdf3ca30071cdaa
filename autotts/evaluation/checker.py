"""``autotts check``: does a controller file honour the contract?

Checks, in order (later checks are skipped when an earlier one makes them meaningless):

1. **import** — the file imports and defines exactly one ``Controller`` subclass;
2. **schedule** — ``schedule(beta)`` returns the same keys for every β of the grid, is
   deterministic, and ``run`` accepts exactly those keyword arguments;
3. **runs** — episodes on a few questions finish without errors and return strings;
4. **deterministic** — the same (question, seed) episodes give identical answers, costs and traces;
5. **monotone cost** — mean tokens never drop (beyond ``tolerance``) as β grows.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..core.episodes import play_episodes, timed_out
from ..core.signals import check_required
from ..envs.registry import make
from ..errors import BadInput
from ..loading.controller_files import ControllerLoadError, load_controller
from ..loading.run_configs import DEFAULT_BETAS, ControllerLike, RunConfig
from ..results.stats import cost_drops


@dataclass
class CheckItem:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    controller: str
    items: list[CheckItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(item.ok for item in self.items)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.items.append(CheckItem(name, ok, detail))
        return ok


FIRST_EPISODE_LIMIT_S = 3.0  # CPU seconds: an episode of any sane controller takes far less


def _schedule_problem(controller, betas) -> str | None:
    try:
        schedules = [controller.schedule(b) for b in betas]
        again = [controller.schedule(b) for b in betas]
    except Exception as exc:
        return f"schedule raised {type(exc).__name__}: {exc}"
    if not all(isinstance(s, dict) for s in schedules):
        return "schedule(beta) must return a dict of run() keyword arguments"
    if schedules != again:
        return "schedule(beta) is not deterministic"
    keys = set(schedules[0])
    for beta, sched in zip(betas, schedules, strict=True):
        if set(sched) != keys:
            return f"schedule({beta}) has keys {sorted(sched)}, schedule({betas[0]}) has {sorted(keys)}"
    try:
        inspect.signature(controller.run).bind(None, **schedules[0])
    except TypeError as exc:
        return f"run(state, **schedule(beta)) does not accept the schedule's keys: {exc}"
    return None


def _add_monotone_cost(report: CheckReport, betas, costs, tolerance) -> None:
    """The last check: mean tokens never drop (beyond ``tolerance``) as β grows."""
    drops = cost_drops(betas, costs, tolerance)
    curve = ", ".join(f"{b:g}:{c / 1000:.1f}k" for b, c in zip(betas, costs, strict=True))
    report.add("monotone cost", not drops, ("cost falls: " + "; ".join(drops)) if drops else curve)


def _check_in_sandbox(report, target, env, questions, seeds, betas, tolerance, isolate):
    """The same checks on the sandboxed path: the file never runs in this process."""
    from ..envs.replay import ReplayEnvironment
    from ..loading.controller_files import resolve_controller_path
    from ..sandbox import run_sandboxed

    if not isinstance(env, ReplayEnvironment):
        raise ValueError(f"{env.env_id}: the sandboxed check runs on single-model environments")
    try:
        source = resolve_controller_path(target).read_text(encoding="utf-8")
    except (ControllerLoadError, OSError, UnicodeDecodeError) as exc:
        report.add("import", False, str(exc))
        return report
    subset = ReplayEnvironment.without_gold(env.env_id, env.questions[:questions])
    outcome = run_sandboxed(
        source,
        {env.env_id: subset},
        [(beta, {}) for beta in betas],
        seeds,
        trace_seeds=0,
        isolate=isolate,
        max_branches=None,
        verify_fraction=1.0,
    )
    reason = outcome.reason
    if not outcome.ok and reason.startswith(("does not load", "static check")):
        report.add("import", False, f"(sandboxed) {reason}")
        return report
    report.add("import", True, "loads in the sandbox")
    if not outcome.ok and reason.startswith("schedule/params failed"):
        report.add("schedule", False, reason)
        return report
    keys = [sorted(p) for p in outcome.params]
    consistent = bool(keys) and all(k == keys[0] for k in keys)
    report.add(
        "schedule",
        consistent or not outcome.ok,
        f"{len(betas)} β values, keys consistent"
        if consistent
        else "schedule keys differ across β",
    )
    if not outcome.ok:
        name = "deterministic" if reason.startswith("non-deterministic") else "runs"
        if name == "deterministic":
            report.add("runs", True, "episodes ran in the sandbox")
        report.add(name, False, reason)
        return report
    errors = [(i, r) for i, _, _, r in outcome.results if r.error]
    if errors:
        i, r = errors[0]
        report.add(
            "runs",
            False,
            f"{len(errors)} of {len(outcome.results)} episodes failed; first: β={betas[i]}, "
            f"question {r.question}, seed {r.seed}: {r.error}",
        )
        return report
    report.add("runs", True, f"{len(outcome.results)} episodes, sandboxed")
    report.add(
        "deterministic",
        True,
        f"{outcome.verified_units} episodes replayed identically in a fresh process",
    )
    totals = [0] * len(betas)
    counts = [0] * len(betas)
    for i, _, _, r in outcome.results:
        totals[i] += r.tokens
        counts[i] += 1
    costs = [t / max(1, c) for t, c in zip(totals, counts, strict=True)]
    _add_monotone_cost(report, betas, costs, tolerance)
    return report


def check_controller(
    target: ControllerLike,
    env_id: str = "Qwen3-8B/aime24",
    *,
    env_dir=None,
    questions: int = 8,
    seeds: int = 4,
    betas=DEFAULT_BETAS,
    tolerance: float = 0.02,
    sandbox: bool | None = None,
    isolate: bool = True,
) -> CheckReport:
    """Check a controller (a file or short name, a ``Controller`` subclass or instance):
    it imports, its β schedule is deterministic with consistent keys, it runs without errors,
    it is deterministic, its cost grows with β. The environment must load (else
    :class:`~autotts.envs.stores.StoreError` propagates); ``report.ok`` says whether all passed.

    ``sandbox``: run the file in the OS sandbox (``True``), in-process (``False``), or
    sandboxed only when ``autotts export`` marked it untrusted (``None``)."""
    report = CheckReport(RunConfig(target).name if RunConfig(target).in_memory else str(target))
    env = make(env_id, env_dir)
    from ..loading.controller_files import is_marked_untrusted, trust_marked_files

    if sandbox is False:  # the user's explicit choice: a marked file runs in process
        trust_marked_files([target])
    if sandbox and RunConfig(target).in_memory:
        raise BadInput("the sandbox runs controller files; write the controller to a file first")
    if sandbox or (sandbox is None and is_marked_untrusted(target)):
        return _check_in_sandbox(
            report, target, env, questions, seeds, list(betas), tolerance, isolate
        )
    try:
        controller = load_controller(target)
    except ControllerLoadError as exc:
        report.add("import", False, str(exc))
        return report
    report.add("import", True, f"{type(controller).__name__} ({controller.name})")
    check_required(controller, env)  # a signal the environment lacks: refuse, say which
    problem = _schedule_problem(controller, list(betas))
    if not report.add(
        "schedule", problem is None, problem or f"{len(betas)} β values, keys consistent"
    ):
        return report

    episodes = [(q, s) for q in range(min(questions, len(env))) for s in range(seeds)]

    def sweep_point(beta: float):
        params = controller.params(beta)
        return list(play_episodes(controller, ((env, params, q, s) for q, s in episodes)))

    middle = betas[len(betas) // 2]
    # one episode under a short limit first, so a hung controller fails within seconds
    probe = controller.params(middle)
    (one,) = play_episodes(controller, [(env, probe, 0, 0)], time_limit_s=FIRST_EPISODE_LIMIT_S)
    if timed_out(one):
        report.add(
            "runs",
            False,
            f"episode did not finish within {FIRST_EPISODE_LIMIT_S:g} s of CPU time (question 0, "
            f"seed 0, β={middle}): does run() loop forever?",
        )
        return report
    first = sweep_point(middle)
    errors = [r for r in first if r.error]
    if not report.add(
        "runs",
        not errors,
        f"{len(errors)} of {len(first)} episodes failed; first: question {errors[0].question}, "
        f"seed {errors[0].seed}: {errors[0].error}"
        if errors
        else f"{len(first)} episodes at β={middle}",
    ):
        return report
    second = sweep_point(middle)
    same = all(
        (a.answer, a.tokens, a.trace) == (b.answer, b.tokens, b.trace)
        for a, b in zip(first, second, strict=True)
    )
    report.add(
        "deterministic",
        same,
        "identical answers, costs and traces on a re-run"
        if same
        else "a re-run gave different answers, costs or traces (randomness or state kept across episodes?)",
    )

    costs = []
    for beta in betas:
        results = first if beta == middle else sweep_point(beta)
        failed = [r for r in results if r.error]
        if failed:
            report.add("monotone cost", False, f"β={beta}: {failed[0].error}")
            return report
        costs.append(sum(r.tokens for r in results) / len(results))
    _add_monotone_cost(report, betas, costs, tolerance)
    return report


check = check_controller
