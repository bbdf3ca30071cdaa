"""Sandbox worker: reads one pickled job on stdin, runs a candidate, writes JSON to stdout.

The reply is JSON, never pickle: the parent must not unpickle anything a process running
untrusted code produced (a ``str`` subclass with ``__reduce__`` would run code in the parent).

Started by :func:`autotts.discovery.sandbox.run_sandboxed` only. Everything the worker itself
needs is imported *before* the audit hook goes in; from then on the candidate can neither open
files, sockets or processes nor introspect frames or the garbage collector.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import sys


def _install_audit_hook(allowed_modules: frozenset[str]) -> None:
    blocked_prefixes = (
        "socket.",
        "subprocess.",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.kill",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.listdir",
        "os.scandir",
        "os.chdir",
        "shutil.",
        "ctypes.",
        "gc.",
        "sys._getframe",
        "sys._current_frames",
        "sys.settrace",
        "sys.setprofile",
        "urllib.",
        "http.",
        "webbrowser.",
        "code.",
        "marshal.",
        "pickle.",
    )

    def hook(event: str, args: tuple) -> None:
        if event == "open" or event.startswith(blocked_prefixes):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import":
            root = str(args[0]).split(".")[0]
            if root not in allowed_modules:
                raise PermissionError(f"sandbox: import of {args[0]!r} is not allowed")

    sys.addaudithook(hook)


def main() -> None:
    job = pickle.loads(sys.stdin.buffer.read())  # from the trusted parent
    out = sys.stdout.buffer
    sys.stdout = io.StringIO()  # a candidate's print() must not corrupt the reply
    # everything the worker needs, imported before the hook
    import collections  # noqa: F401
    import math  # noqa: F401
    import statistics  # noqa: F401

    from autotts.contract import Controller  # noqa: F401
    from autotts.discovery.sandbox import SAFE_MODULES
    from autotts.evaluate import Watchdog
    from autotts.loader import ControllerLoadError, controller_class_from_source
    from autotts.replay import ReplayEnvironment

    envs = {
        env_id: ReplayEnvironment.without_gold(env_id, questions, branch_limit=job["max_branches"])
        for env_id, questions in job["envs"].items()
    }
    _install_audit_hook(SAFE_MODULES | {"autotts", "encodings"})

    reply: dict = {"error": None, "results": [], "probe": "", "params": []}
    try:
        cls = controller_class_from_source(job["source"], "candidate.py")
        controller = cls()
        params = [controller.params(beta, **overrides) for beta, overrides in job["configs"]]
    except ControllerLoadError as exc:
        reply["error"] = f"does not load: {exc}"
    except Exception as exc:
        reply["error"] = f"schedule/params failed: {type(exc).__name__}: {exc}"
    if reply["error"] is None:
        seeds, trace_seeds = job["seeds"], job["trace_seeds"]
        with Watchdog(job["episode_s"]) as watchdog:

            def play(index: int, env_id: str, question: int, seed: int, trace: bool):
                watchdog.reset()
                return envs[env_id].run_episode(
                    controller, params[index], question, seed, record_trace=trace
                )

            digest = hashlib.sha256()
            for env_id, question in job["probe_units"]:
                for index in range(len(params)):
                    for seed in range(min(seeds, 3)):
                        r = play(index, env_id, question, seed, True)
                        digest.update(repr((r.answer, r.tokens, r.error, r.actions)).encode())
            reply["probe"] = digest.hexdigest()
            reply["params"] = params
            for env_id, question in job["units"]:
                for index in range(len(params)):
                    for seed in range(seeds):
                        traced = seed < trace_seeds
                        r = play(index, env_id, question, seed, traced)
                        reply["results"].append(
                            [
                                index,
                                env_id,
                                question,
                                seed,
                                r.answer,
                                r.tokens,
                                r.probe_tokens,
                                r.opened,
                                r.steps,
                                r.error,
                                r.reason if traced else "",
                                r.actions if traced else None,
                            ]
                        )
    out.write(json.dumps(reply, default=repr).encode())
    out.flush()


if __name__ == "__main__":
    main()
