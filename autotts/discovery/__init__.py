"""Discovering controllers: the run API (:mod:`.runs`) and the strategies that propose what to
evaluate (:mod:`.strategies`: Optuna over the composable space, tuning, an LLM or a coding
agent); the Optuna path's stages (search, budget windows, race, family, held-out judgement);
the LLM proposer's loop, quick tests and objective; scoring in bulk; export and reports."""
