"""``envs import`` of real vLLM outputs, then ``envs probe`` on the real CPU engine with the
tiny model: killed mid-run and resumed with nothing lost, equal to an uninterrupted probe,
and the probed store replays CMC."""

import json
import math
import sys

import pytest
from conftest import MAX_MODEL_LEN, kill_mid_run_and_resume

import autotts
from autotts.envs.sample_import import import_dumps, load_tokenizer, texts_path
from autotts.envs.stores import load_records
from autotts.live.backend import GenerationRequest
from autotts.live.probing import probe_store
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import load_controller

pytestmark = pytest.mark.live
N_QUESTIONS, N_SAMPLES, LENGTH, DELTA = 6, 6, 200, 16


@pytest.fixture(scope="module")
def imported(vllm_backend, tmp_path_factory):
    """A dump of real vLLM RequestOutputs (as JSON, the way a user writes them), imported."""
    from vllm import SamplingParams

    backend, root = vllm_backend, tmp_path_factory.mktemp("dump")
    lines = []
    for q in range(N_QUESTIONS):
        question = f"What is {q} + {q}?"
        prompt = backend.tokenizer.decode(backend.prompt(f"{question}\n\nReason.", None, True))
        params = SamplingParams(n=N_SAMPLES, max_tokens=LENGTH, temperature=1.0, seed=q)
        (output,) = backend.llm.generate([prompt], params, use_tqdm=False)
        lines.append({
            "question": question, "gold_answer": str(2 * q), "request_id": output.request_id,
            "prompt": output.prompt, "prompt_token_ids": list(output.prompt_token_ids),
            "finished": output.finished,
            "outputs": [{"index": c.index, "text": c.text, "token_ids": list(c.token_ids),
                         "cumulative_logprob": c.cumulative_logprob,
                         "finish_reason": c.finish_reason} for c in output.outputs],
        })  # fmt: skip
    dump = root / "outputs.jsonl"
    dump.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return import_dumps([dump], root / "envs" / "Tiny" / "dump.json", delta=DELTA)


def test_token_counts_come_from_the_sampled_ids_or_the_tokenizer(
    tiny_model, vllm_backend, imported
):
    side = [json.loads(line) for line in texts_path(imported).open()]
    for record, line in zip(load_records(imported), side, strict=True):
        assert [len(ids) for ids in line["token_ids"]] == [b[1] for b in record.each_branch]
        assert line["prompt_ids"] == list(vllm_backend.encode(line["prompt"]))
    count = load_tokenizer(str(tiny_model))
    text = "Let me think step by step. The answer is \\boxed{42}."
    assert count(text) == len(vllm_backend.encode(text))


def test_probe_killed_mid_run_resumes_equal_to_one_run_and_replays_cmc(
    tiny_model, vllm_backend, imported, tmp_path
):
    settings = LiveSettings(delta=DELTA, probe_tokens=4)
    whole = probe_store(vllm_backend, imported, tmp_path / "Tiny" / "whole.json", settings)
    out = imported.with_name("probed.json")
    command = [
        sys.executable, "-m", "autotts.cli", "envs", "probe", str(imported), "--out", str(out),
        "--model", str(tiny_model), "--probe-tokens", "4", "--max-model-len",
        str(MAX_MODEL_LEN), "--enforce-eager", "--engine-arg", "max_num_seqs=8",
    ]  # fmt: skip
    records = kill_mid_run_and_resume(command, out, N_QUESTIONS)
    assert records == json.loads(whole.read_text())  # greedy: the interrupted run is the same
    for record in records:
        assert "width_only" not in record and record["probe_freq"] == DELTA
        for probes, tokens, _ in record["each_branch"]:  # cut at Δ, 2Δ, … before the end
            assert len(probes) == math.ceil(tokens / DELTA) - 1
    meta = json.loads(out.with_name("probed.meta.json").read_text())
    assert meta["builder"] == "envs-probe" and meta["model"] == str(tiny_model)
    assert meta["settings"]["delta"] == DELTA and "vllm" in meta["versions"]
    assert meta["settings"]["probe_suffix"].endswith("\\boxed{")
    assert meta["imported"]["format"] == "vllm"
    probes = sum(len(b[0]) for r in records for b in r["each_branch"])
    assert meta["probe_cost"]["probes"] == probes and meta["generated_tokens"] <= 4 * probes
    assert meta["generated_ratio_vs_build_env"] < 0.2
    env = autotts.make("Tiny/probed", out.parent.parent)
    cmc = load_controller("cmc")
    for q in range(N_QUESTIONS):
        result = env.run_episode(cmc, cmc.params(0.0), q, seed=0)
        assert result.error is None and result.tokens > 0


def test_a_probe_reads_what_the_engine_would_answer_at_that_cut(vllm_backend, imported):
    """One probe recomputed by hand: prompt + the branch's first Δ tokens + the suffix."""
    settings = LiveSettings(delta=DELTA, probe_tokens=4)
    record = load_records(imported)[0]
    line = json.loads(texts_path(imported).open().readline())
    from autotts.live.probing import probe_question

    probed = probe_question(vllm_backend, record, line, settings)
    ids = line["token_ids"][0]
    prefix = (*line["prompt_ids"], *ids[:DELTA],
              *vllm_backend.encode(settings.probe_suffix))  # fmt: skip
    (g,) = vllm_backend.generate([GenerationRequest(prefix, 4, {"temperature": 0.0}, 0)])
    from autotts.envs.answers import probe_answer

    assert probed["each_branch"][0][0][0] == probe_answer(g.text, settings.probe_suffix)
