"""``autotts envs import``: each dump format becomes a width-only store that width controllers
replay and probe controllers refuse clearly; bad dumps name file, line and field."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import autotts
from autotts.cli import app
from autotts.envs.sample_import import (
    DumpError,
    extract_answer,
    import_dumps,
    read_dump,
    texts_path,
)
from autotts.envs.stores import StoreError, load_records
from autotts.live.questions import load_questions
from autotts.loading.controller_files import load_controller

DUMPS = Path(__file__).parents[1] / "fixtures" / "imports"
LM_EVAL = DUMPS / "samples_aime24_2025-11-20T10-12-33.jsonl"


def store_of(tmp_path, name, **kwargs) -> Path:
    return import_dumps([DUMPS / name], tmp_path / "Imported" / "set.json", **kwargs)


def test_our_jsonl_format(tmp_path):
    path = store_of(tmp_path, "samples.jsonl")
    first, second = load_records(path)
    assert first.width_only and first.probe_freq == 500
    assert first.each_branch == [([], 812, "42"), ([], 1530, "41"), ([], 640, "42")]
    # boxed, then math-verify's extraction, then ERR; a numeric gold becomes a string
    assert [b[2] for b in second.each_branch] == ["4", "4", "ERR"]
    assert second.gold_answer == "4"
    # the sample given only as an answer has no text: that question cannot be probed
    assert not texts_path(path).exists()
    assert json.loads(path.with_name("set.meta.json").read_text())["texts"] is None


def test_lm_eval_log_samples(tmp_path):
    fmt, items = read_dump(LM_EVAL)
    assert fmt == "lm-eval" and len(items) == 2  # the maj@3 filter's lines repeat the docs
    counts = iter(range(100, 1000, 10))
    path = store_of(tmp_path, LM_EVAL.name, count_tokens=lambda text: next(counts))
    records = load_records(path)
    assert [r.question for r in records] == ["Find x if x - 3 = 30.", "Compute 20 + 3."]
    assert [r.gold_answer for r in records] == ["33", "23"]
    assert [b[2] for b in records[1].each_branch] == ["23", "\\frac{1}{2}", "23"]
    assert [b[1] for b in records[0].each_branch] == [100, 110, 120]
    side = [json.loads(line) for line in texts_path(path).read_text().splitlines()]
    assert side[0]["prompt"].startswith("<|im_start|>user\nFind x")  # arguments.gen_args_0
    assert side[0]["texts"][2] == "maybe \\boxed{35}"


def test_openai_responses_completions_and_chat(tmp_path):
    records = load_records(store_of(tmp_path, "openai_completions.jsonl"))
    # tokens from logprobs.tokens and from token_ids; a single chat choice from usage
    assert records[0].each_branch == [([], 7, "7"), ([], 5, "8")]
    assert records[1].each_branch == [([], 22, "9")] and records[1].gold_answer == "9"
    side = [json.loads(line) for line in texts_path(tmp_path / "Imported/set.json").open()]
    assert side[1]["texts"][0].startswith("3 squared is 9\n</think>")
    # a prompt given as token ids (the completions API accepts them) is not a text prompt
    line = json.loads((DUMPS / "openai_completions.jsonl").read_text().splitlines()[0])
    assert read_dump_line({**line, "prompt": [1, 2, 3]}, tmp_path).prompt is None


def read_dump_line(obj: dict, tmp_path):
    dump = tmp_path / "one.jsonl"
    dump.write_text(json.dumps(obj) + "\n")
    return read_dump(dump)[1][0]


def test_vllm_outputs_with_a_question_file(tmp_path):
    questions = load_questions(str(DUMPS / "vllm_questions.jsonl"))
    records = load_records(store_of(tmp_path, "vllm_outputs.jsonl", questions=questions))
    assert [r.question for r in records] == ["Q1", "Q2"]
    assert records[0].each_branch == [([], 3, "5"), ([], 2, "6")]
    with pytest.raises(DumpError, match=r"vllm_outputs.jsonl, line 1: question: missing"):
        store_of(tmp_path, "vllm_outputs.jsonl")
    with pytest.raises(DumpError, match="2 questions but the question file 1"):
        store_of(tmp_path, "vllm_outputs.jsonl", questions=questions[:1])


def test_a_json_array_and_a_gzipped_dump_read_like_json_lines(tmp_path):
    """``json.dump(outputs, f, indent=2)`` and ``.jsonl.gz`` files: the same store."""
    import gzip

    questions = load_questions(str(DUMPS / "vllm_questions.jsonl"))
    lines = (DUMPS / "vllm_outputs.jsonl").read_text().splitlines()
    array = tmp_path / "outputs.json"
    array.write_text(json.dumps([json.loads(line) for line in lines], indent=2))
    packed = tmp_path / "outputs.jsonl.gz"
    packed.write_bytes(gzip.compress("\n".join(lines).encode()))
    expected = load_records(store_of(tmp_path, "vllm_outputs.jsonl", questions=questions))
    for dump in (array, packed):
        store = import_dumps([dump], tmp_path / dump.stem / "set.json", questions=questions)
        assert load_records(store) == expected
    with pytest.raises(DumpError, match=r"outputs.json, item 1: question: missing"):
        import_dumps([array], tmp_path / "x" / "set.json")
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DumpError, match=r"broken.jsonl.gz: cannot read the dump"):
        read_dump(tmp_path / "broken.jsonl.gz")


def test_width_controllers_replay_and_probe_controllers_are_refused(tmp_path):
    store_of(tmp_path, "samples.jsonl")
    env = autotts.make("Imported/set", tmp_path)
    sc = load_controller("sc")
    result = env.run_episode(sc, sc.params(1.0, n=3), 0, seed=0)
    assert result.error is None and result.answer == "42" and result.tokens == 812 + 1530 + 640
    for name in ("sc", "asc", "esc"):  # budgets beyond the 3 samples read all of them
        width = load_controller(name)
        for q in range(2):
            assert env.run_episode(width, width.params(1.0), q, seed=1).error is None, name
    cmc = load_controller("cmc")
    result = env.run_episode(cmc, cmc.params(0.5), 0, seed=0)
    assert "this store has no probe answers" in result.error
    assert "autotts envs probe" in result.error


def test_bad_dumps_name_file_line_and_field(tmp_path):
    def bad(text: str, match: str, **kwargs):
        dump = tmp_path / "bad.jsonl"
        dump.write_text(text)
        with pytest.raises(DumpError, match=match):
            import_dumps([dump], tmp_path / "M" / "d.json", **kwargs)

    good = json.dumps(
        {"question": "q", "gold_answer": "1", "samples": [{"answer": "1", "tokens": 3}]}
    )
    bad(good + "\n{oops\n", r"bad.jsonl, line 2: not valid JSON at column 2")
    bad(
        good + '\n{"question": "q", "samples": [{"answer": "1"}]}\n',
        r"bad.jsonl, line 2: gold_answer: Field required",
    )
    bad(
        '{"question": "q", "gold_answer": "1", "samples": [{"tokens": 3}]}',
        r"bad.jsonl, line 1: samples\[0\]: a sample needs 'text' or 'answer'",
    )
    bad(
        '{"question": "q", "gold_answer": "1", "samples": [{"answer": "1", "tokens": -4}]}',
        r"bad.jsonl, line 1: samples\[0\].tokens: Input should be greater",
    )
    bad(
        '{"question": "q", "gold_answer": "1", "samples": [{"text": "\\\\boxed{1}"}]}',
        r"bad.jsonl, line 1: sample 0: no token count in the dump; name a tokenizer",
    )
    bad(
        '{"doc_id": 0, "resps": [[1]], "target": "3"}',
        r"bad.jsonl, line 1: resps\[0\]\[0\]: expected a generated text",
    )
    bad(
        '{"id": 3, "choices": [{"index": 0}]}',
        r"bad.jsonl, line 1: choices\[0\]: no 'text' or 'message.content'",
    )
    bad(
        '{"outputs": [{"token_ids": [1]}]}',
        r"bad.jsonl, line 1: outputs\[0\].text: expected the generated text",
    )
    bad('{"hello": 1}', r"bad.jsonl, line 1: cannot tell the format")
    bad("[1, 2]", r"bad.jsonl, item 1: expected a JSON object")
    bad(
        '[{"question": "q",\n  "gold_answer": }]', r"bad.jsonl, line 2: not valid JSON at column 18"
    )
    bad("\n\n", r"bad.jsonl: the dump holds no samples")
    bad(good, r"unknown dump format 'csv'", fmt="csv")


def test_store_validation_keeps_width_only_honest(tmp_path):
    path = tmp_path / "M" / "d.json"
    path.parent.mkdir()
    record = {"question": "q", "gold_answer": "1", "probe_freq": 500, "width_only": True,
              "each_branch": [[["1"], 900, "1"]]}  # fmt: skip
    path.write_text(json.dumps([record]))
    with pytest.raises(StoreError, match="question 0: width_only is true but some branches"):
        load_records(path)


def test_answer_extraction():
    assert extract_answer("so \\boxed{\\frac{3}{4}} and more text") == "\\frac{3}{4}"
    assert extract_answer("The answer is $12$.") == "12"
    assert extract_answer("I give up") == "ERR"


def test_the_cli_imports_and_reports(tmp_path):
    out = tmp_path / "Mine" / "aime.json"
    result = CliRunner().invoke(
        app, ["envs", "import", str(DUMPS / "vllm_outputs.jsonl"), "--out", str(out),
              "--questions", str(DUMPS / "vllm_questions.jsonl"), "--delta", "250"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 questions, 4 samples, width-only" in result.output
    assert load_records(out)[0].probe_freq == 250
    result = CliRunner().invoke(app, ["envs", "import", str(DUMPS / "vllm_outputs.jsonl"),
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2 and "question: missing" in result.output
