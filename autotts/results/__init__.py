"""Results: the evaluation report (:mod:`.evaluation_report`), the files it is written to
(:mod:`.writers`), statistics and intervals (:mod:`.stats`), matched budgets
(:mod:`.budgets`), whole-curve summaries (:mod:`.curve_summaries`), execution traces
(:mod:`.traces`), provenance records (:mod:`.provenance`) and run directories
(:mod:`.run_directory`).
"""
