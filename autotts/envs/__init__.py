"""Environments: the registry of environment ids (:mod:`.registry`), replay stores made
executable (:mod:`.replay`, its compiled loop, :mod:`.replay_arrays` for bulk scoring),
cross-model replay (:mod:`.cross_model`), the stores themselves (:mod:`.stores`,
:mod:`.fetch`, :mod:`.sample_import`) and answers (:mod:`.answers`: extraction and grading;
:mod:`.answer_groups`: equivalence-aware grouping).
"""
