"""The pure-Python replay loop: the specification of ``autotts/envs/_replay_loop.c``.

:class:`PythonReplayLoop` is mixed into the replay episode (``autotts.envs.replay._Episode``),
which runs it where the compiled loop is missing or ``AUTOTTS_PURE_PYTHON=1`` is set. It
reads and writes the episode's private accounting (``depth``, ``live``, ``probes``,
``lengths``) and its ``state`` mirror, and calls back ``_finish`` / ``_raise_inactive``.
"""

from __future__ import annotations

from itertools import repeat

from ..core.engine import check_ids


class PythonReplayLoop:
    """Advancing branches by whole intervals, with or without revealing probes."""

    __slots__ = ()

    def _extend_python(self, ids, k, probe: bool) -> int:
        """The pure-Python replay loop, the specification of ``autotts/envs/_replay_loop.c``."""
        check_ids(ids)
        if ids and min(ids) < 0:
            raise IndexError(min(ids))
        return (self._extend_probing if probe else self._extend_silently)(ids, k)

    def _extend_probing(self, ids, k) -> int:
        """The hot loop of replay: advance each branch by ``k`` intervals (one int, or one per
        branch) and reveal the probe at the end. Returns the tokens saved by branches that
        finished (see :meth:`_finish`)."""
        state = self.state
        depth, live, probes = self.depth, self.live, self.probes
        visible, answer, history = state.depth, state.answer, state.history
        shortfall = 0
        for i, n in _with_steps(ids, k):
            if not live[i]:
                self._raise_inactive(i)
            d = depth[i] + n
            try:
                a = probes[i][d - 1]
            except IndexError:  # past the last probe: the branch finishes
                shortfall += self._finish(i, n)
                continue
            depth[i] = visible[i] = d
            answer[i] = a
            history[i].append(a)
        return shortfall

    def _extend_silently(self, ids, k) -> int:
        """Like :meth:`_extend_probing`, without revealing probes (``probe=False``)."""
        depth, live, lengths, visible = self.depth, self.live, self.lengths, self.state.depth
        shortfall = 0
        for i, n in _with_steps(ids, k):
            if not live[i]:
                self._raise_inactive(i)
            d = depth[i] + n
            if d > lengths[i]:
                shortfall += self._finish(i, n)
            else:
                depth[i] = visible[i] = d
        return shortfall


def _with_steps(ids, k):
    """``(id, steps)`` pairs of a ``Continue`` whose steps are one int or one per id."""
    return zip(ids, repeat(k)) if isinstance(k, int) else zip(ids, k, strict=True)
