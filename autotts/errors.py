"""The error hierarchy. Every error autotts raises on purpose derives from
:class:`AutoTTSError`, split in two so callers (and the CLI's exit codes) can tell them apart:

- :class:`BadInput`: what the caller gave cannot be used (an unknown environment, a malformed
  store or trace file, a controller file that does not load); fix the input and retry.
  The CLI exits with code 2.
- :class:`RunFailure`: the input was fine but running failed (an inference backend died, the
  machine cannot isolate untrusted code, a download failed). The CLI exits with code 1.

Messages name the file, field or value at fault and what to do; they never name CLI options,
so they read the same from Python and from the command line.
"""

from __future__ import annotations


class AutoTTSError(Exception):
    """Root of every error autotts raises on purpose."""


class BadInput(AutoTTSError, ValueError):
    """The input cannot be used (the message names it and says what to do)."""


class RunFailure(AutoTTSError, RuntimeError):
    """Running failed for a reason other than the input (backend, machine, network)."""


__all__ = ["AutoTTSError", "BadInput", "RunFailure"]
