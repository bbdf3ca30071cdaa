"""The README's live commands (GPU ones included) name options that exist: every option of
every ``autotts build-env``/``validate``/``envs import|probe`` line is one of the command's, and every
``--engine-arg KEY=VALUE`` is a field of the installed vLLM's ``EngineArgs``."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import typer

from autotts.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    joined = "\n".join(b.replace("\\\n", " ") for b in blocks)
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith(("autotts build-env", "autotts validate", "autotts envs ")):
            yield shlex.split(line)


def test_readme_live_commands_use_existing_options():
    vllm = pytest.importorskip("vllm")
    fields = {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    cli = typer.main.get_command(app)
    found = list(_commands())
    assert any("--streaming" in c for c in found)  # the GPU build command is among them
    assert any(c[:3] == ["autotts", "envs", "probe"] for c in found)
    for words in found:
        command = cli.commands[words[1]]
        if words[1] == "envs":
            command = command.commands[words[2]]
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for i, word in enumerate(words):
            if word.startswith("-") and not word.lstrip("-").isdigit():
                assert word.split("=")[0] in known, f"{' '.join(words[:2])}: unknown {word}"
            if word == "--engine-arg":
                key = words[i + 1].split("=")[0]
                assert key in fields, f"--engine-arg {key}: not a vllm.EngineArgs field"
