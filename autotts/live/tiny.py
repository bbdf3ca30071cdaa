"""A tiny random Qwen2-architecture model with its own tokenizer, built locally in seconds.

It exercises the whole live path (vLLM engine, OpenAI-compatible server, chat template,
probing, build-env, validate) on a machine with no model hub and no GPU: tests and CPU
smoke runs use it. Its answers are noise; only the plumbing is real.

    python -m autotts.live.tiny DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

# A Qwen3-style chat template (system/user/assistant turns, optional thinking block), small
# enough for the tiny tokenizer. Real Qwen3 models ship their own.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

_CORPUS = [
    "Let me think step by step about the problem. First, compute the sum of the digits.",
    "The answer is \\boxed{42}. Therefore the final answer is \\boxed{17}.",
    "We have x + y = 10 and x - y = 4, so x = 7 and y = 3. The answer is \\boxed{21}.",
    "Find the number of positive integers n less than 1000 such that n is divisible by 7.",
    "Consider a triangle ABC with sides 13, 14 and 15. Its area is 84.",
    "The final answer is \\boxed{",
    "</think>\n\nThe final answer is \\boxed{",
    "0123456789 + - * / = ( ) { } \\frac \\sqrt ^ _ , . : ; ? !",
]


def build_tiny_model(directory: str | Path, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a tokenizer and a randomly initialised 2-layer Qwen2 model (≈ 2 MB) to
    ``directory`` and return it. Deterministic for a given ``seed``. Its EOS logit is pinned
    at 0, so greedy decoding never ends a branch (the token limit does) and sampling ends one
    rarely."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        AutoModelForCausalLM,
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2Config,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head size 64: CPU attention rejects 16
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        torch_dtype="float32",
    )
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # EOS logit 0 while some other logit is always positive:
        model.lm_head.weight[config.eos_token_id] = 0.0  # greedy decoding never stops
    # Qwen3's sampling defaults, so the generation-config path is exercised
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=0.6, top_p=0.95, top_k=20, min_p=0.0,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
    )  # fmt: skip
    model.save_pretrained(directory)
    return directory


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m autotts.live.tiny DIR")
    print(build_tiny_model(sys.argv[1]))
