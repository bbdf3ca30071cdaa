"""Answer extraction and grading of live runs (no engine needed)."""

from autotts.envs.answers import (
    UNPARSABLE,
    answers_match,
    extract_boxed,
    final_answer,
    probe_answer,
)


def test_last_boxed_answer_with_nested_braces():
    assert extract_boxed("so \\boxed{3} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert extract_boxed("earlier \\boxed{7} and an unclosed \\boxed{12") == "7"
    assert extract_boxed("no answer here") is None


def test_unparsable_answers_are_err_like_the_shipped_data():
    assert final_answer("I am not sure.") == UNPARSABLE
    assert final_answer("\\boxed{}") == UNPARSABLE
    assert probe_answer("204} because") == "204"
    assert probe_answer("the answer is unclear") == UNPARSABLE  # box never closed
    assert probe_answer("} nothing inside") == UNPARSABLE


def test_grading_uses_math_equivalence():
    assert answers_match("0.5", "\\frac{1}{2}")
    assert answers_match("204", "204")
    assert not answers_match("204", "205")
    assert not answers_match("204", UNPARSABLE) and not answers_match("204", None)


def test_grading_works_off_the_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(answers_match, "0.5", "\\frac{1}{2}").result()


def test_the_probe_suffix_follows_the_thinking_mode():
    from autotts.envs.answers import DEFAULT_PROBE_SUFFIX, NON_THINKING_PROBE_SUFFIX
    from autotts.live.settings import LiveSettings

    assert LiveSettings().probe_suffix == DEFAULT_PROBE_SUFFIX
    assert "</think>" in DEFAULT_PROBE_SUFFIX
    assert LiveSettings(thinking=False).probe_suffix == NON_THINKING_PROBE_SUFFIX
    assert "</think>" not in NON_THINKING_PROBE_SUFFIX
    assert LiveSettings(thinking=False, probe_suffix="Answer: ").probe_suffix == "Answer: "
    assert LiveSettings(thinking=None).probe_suffix == DEFAULT_PROBE_SUFFIX


def test_branch_length_defaults_to_the_context_and_refuses_what_does_not_fit():
    import pytest

    from autotts.live.backend import BackendError
    from autotts.live.settings import LiveSettings

    settings = LiveSettings(probe_tokens=16)
    assert settings.branch_limit("Qwen3-8B", 40_960, 100, 12) == 40_960 - 100 - 12 - 16
    assert settings.branch_limit("server", 0, 100, 12) == 32_768  # context unknown
    explicit = LiveSettings(max_branch_tokens=40_960)
    with pytest.raises(BackendError, match="max_branch_tokens=40960 does not fit Qwen3-8B"):
        explicit.branch_limit("Qwen3-8B", 40_960, 100, 12)
    assert explicit.branch_limit("Qwen3-8B", 131_072, 100, 12) == 40_960
    with pytest.raises(BackendError, match="less than one interval"):
        LiveSettings(delta=500).branch_limit("tiny", 600, 100, 12)
