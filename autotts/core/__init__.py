"""The core contract: controllers (:mod:`.contract`: actions, :class:`EpisodeState`), the
environment contract (:mod:`.environment`), the episode engine that plays a controller's
actions (:mod:`.engine`), episode loops under CPU-time limits (:mod:`.episodes`), and the
helpers controllers aggregate with (:mod:`.voting`, :mod:`.signals`).
"""
