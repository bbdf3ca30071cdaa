"""Naming and loading controllers: controller files and short names (:mod:`.controller_files`),
spec strings and run configurations (:mod:`.run_configs`), and method files written for the
AutoTTS paper's API (:mod:`.autotts_paper_api`).
"""
