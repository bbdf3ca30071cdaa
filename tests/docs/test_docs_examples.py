"""Every code block of the README and of the docs site (``docs/``) runs, and the site builds.

The fenced blocks of a page are read in order and run in one temporary working directory
per page, so a block sees what the blocks before it wrote: ``python`` blocks run as scripts,
``bash`` blocks as ``bash -e`` scripts with ``autotts`` and ``python`` on the PATH meaning this
checkout's CLI and interpreter; ``yaml`` blocks are collaboration graphs, evaluated with
``autotts collab eval``; ``text`` blocks are program output or listings and do not run. The
working directory links the checkout's ``docs/``, ``controllers/``, ``agents/`` … and has
``../shared`` beside it, as a checkout does.

A block that cannot run here (a GPU, an API key, the network, a server) carries the mark
``<!-- not run: REASON -->`` on the line before it: a mark without a reason fails, a reason
naming a test file names one that exists, and every unmarked block of a page must have run.
``<!-- output of the block above -->`` before a ``text`` block makes each of its lines
something the block above must print, so quoted numbers stay the numbers the command prints.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLE = ROOT / "docs" / "examples" / "parallel_vote.py"
LINKED = ("docs", "controllers", "agents", "benchmarks", "environments", "traces")
RUNNABLE = {"python", "bash", "yaml"}
LANGUAGES = RUNNABLE | {"text"}
FENCE = re.compile(r"^```(\S*)\s*$")
MARK = re.compile(r"^<!--\s*not run(?::\s*(?P<reason>.*?))?\s*-->\s*$")
OUTPUT = re.compile(r"^<!--\s*output of the block above\s*-->\s*$")
# pages whose blocks take over ~30 s on two cores (the quick local run skips them)
SLOW_PAGES = {"README.md", "evaluating.md"}


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str | None = None  # the mark's line, when the block is marked "not run"
    reason: str = ""
    expected: list[str] = dataclasses.field(default_factory=list)  # lines it must print

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.mark is None


def read_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j] == "```"), None)
        assert end is not None, f"{page.relative_to(ROOT)}:{i + 1}: unclosed code block"
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        block = Block(page, i + 1, opening.group(1), "\n".join(lines[i + 1 : end]) + "\n")
        if mark := MARK.match(before.strip()):
            block.mark, block.reason = before.strip(), (mark.group("reason") or "").strip()
        if OUTPUT.match(before.strip()) and blocks:
            blocks[-1].expected = [line for line in block.code.splitlines() if line.strip()]
        blocks.append(block)
        i = end + 1
    return blocks


ALL = {page: read_blocks(page) for page in PAGES}


def test_every_block_is_accounted_for():
    """Known languages only; every "not run" mark has a reason (a test file it names exists)
    and stands right before a runnable block; output marks stand before text blocks."""
    problems = []
    for page, blocks in ALL.items():
        text = page.read_text(encoding="utf-8").splitlines()
        marks = {b.mark for b in blocks if b.mark}
        for n, line in enumerate(text, 1):
            stripped = line.strip()
            if re.search(r"<!--.*not\W*run", stripped, re.I) and not MARK.match(stripped):
                problems.append(f"{page.relative_to(ROOT)}:{n}: malformed mark {stripped!r}")
            elif MARK.match(stripped) and stripped not in marks:
                problems.append(f"{page.relative_to(ROOT)}:{n}: mark not right before a block")
        for block in blocks:
            if block.lang not in LANGUAGES:
                problems.append(f"{block.where}: code block language {block.lang!r}")
            if block.mark is None:
                continue
            if len(block.reason.split()) < 3:
                problems.append(f"{block.where}: 'not run' without a reason: {block.mark}")
            if block.lang not in RUNNABLE:
                problems.append(f"{block.where}: a {block.lang} block never runs; no mark")
            for path in re.findall(r"tests/[\w/]+\.py", block.reason):
                if not (ROOT / path).is_file():
                    problems.append(f"{block.where}: the reason names {path}, which is gone")
        for previous, block in zip(blocks, blocks[1:], strict=False):
            if block.lang == "text" and previous.expected and not previous.runs:
                problems.append(f"{block.where}: output of a block that does not run")
    assert not problems, "\n".join(problems)
    runnable = sum(b.runs for blocks in ALL.values() for b in blocks)
    assert runnable >= 20, f"only {runnable} runnable blocks: did the parser lose them?"


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    """``autotts`` and ``python`` for the blocks: this checkout's CLI and interpreter."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, command in (("autotts", "-m autotts.cli"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {command} "$@"\n')
        shim.chmod(0o755)
    return bin_dir


@pytest.fixture(scope="module")
def block_env(tools, env_dir, tmp_path_factory):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {
        **os.environ,
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": path,
        "AUTOTTS_ENV_DIR": str(env_dir),
        "AUTOTTS_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "COLUMNS": "200",
        "MPLBACKEND": "Agg",
    }


def run_block(block: Block, cwd: Path, env: dict, n: int) -> subprocess.CompletedProcess:
    if block.lang == "python":
        script = cwd / f"block_{n}.py"
        script.write_text(block.code)
        command = [sys.executable, str(script)]
    elif block.lang == "bash":
        command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    else:  # yaml: a collaboration graph
        graph = cwd / f"graph_{n}.yaml"
        graph.write_text(block.code)
        out = cwd / f"graph_{n}"
        command = [sys.executable, "-m", "autotts.cli", "collab", "eval", str(graph),
                   "--betas", "1", "--seeds", "2", "-o", str(out)]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _page_params():
    for page, blocks in ALL.items():
        if any(b.runs for b in blocks):
            marks = [pytest.mark.slow] if page.name in SLOW_PAGES else []
            yield pytest.param(page, id=str(page.relative_to(ROOT)), marks=marks)


@pytest.mark.parametrize("page", list(_page_params()))
def test_page_blocks_run(page, block_env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    shared = (ROOT / ".." / "shared").resolve()
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    expected = [b.where for b in ALL[page] if b.runs]
    ran = []
    for n, block in enumerate(ALL[page]):
        if not block.runs:
            continue
        start = time.monotonic()
        done = run_block(block, work, block_env, n)
        output = done.stdout + done.stderr
        assert done.returncode == 0, (
            f"{block.where} ({block.lang}) exited {done.returncode} after "
            f"{time.monotonic() - start:.0f} s:\n{block.code}\n--- output ---\n{output[-4000:]}"
        )
        missing = [line for line in block.expected if line not in done.stdout]
        assert not missing, f"{block.where}: the quoted output is not what it prints: {missing}"
        ran.append(block.where)
    assert ran == expected, f"blocks that did not run: {sorted(set(expected) - set(ran))}"


def test_the_example_controller_is_what_the_pages_show():
    """The README and the controller guide show docs/examples/parallel_vote.py verbatim."""
    source = EXAMPLE.read_text(encoding="utf-8")
    for name in ("README.md", "controllers.md"):
        page = next(p for p in PAGES if p.name == name)
        shown = [b.code for b in ALL[page] if "class ParallelVote" in b.code]
        assert shown == [source], f"{name} does not show {EXAMPLE.relative_to(ROOT)} as it is"


def test_the_example_controller_scores_above_its_floor(env_dir):
    """Measured (20 seeds, the four AIME24 stores, β=0.5): 63.33 % at 280.7k tokens on the
    means, against SC@64's 63.67 % at 946k. The floor: within 1.5 points of SC@64's
    accuracy with at most a third of its tokens (the README's previous first example scored
    2.7-41 %, CMC β=0 gets 58.8 % at 52k). Replay is deterministic, so this fails only when
    the example or the engine changes what it scores."""
    import autotts

    controller = autotts.load_controller(str(EXAMPLE))
    assert controller.name == "parallel-vote"
    assert autotts.check(controller, env_dir=env_dir, questions=4, seeds=2).ok
    report = autotts.evaluate([str(EXAMPLE), "sc@n=64"], "Qwen3-*/aime24", betas=[0.5],
                              seeds=20, env_dir=env_dir, trace_seeds=0)  # fmt: skip
    envs = sorted({row.env_id for row in report.rows})
    assert len(envs) == 4 and all(row.status == "ok" for row in report.rows)

    def means(name):
        rows = [row for row in report.rows if row.controller == name]
        assert len(rows) == 4
        return (sum(r.accuracy for r in rows) / 4, sum(r.tokens for r in rows) / 4)

    accuracy, tokens = means("parallel-vote")
    sc_accuracy, sc_tokens = means("sc")
    assert accuracy >= sc_accuracy - 1.5, (accuracy, sc_accuracy)
    assert tokens <= sc_tokens / 3, (tokens, sc_tokens)


def _cli_commands():
    """Every ``autotts …`` command line of every bash block, run or not, as words."""
    for blocks in ALL.values():
        for block in blocks:
            if block.lang != "bash":
                continue
            script = block.code.replace("\\\n", " ")
            for line in script.splitlines():
                for part in re.split(r"&&|\|\||;|\|", line):
                    try:
                        words = shlex.split(part, comments=True)
                    except ValueError:
                        continue
                    if words[:1] == ["autotts"]:
                        yield block, words


def test_every_command_names_options_that_exist():
    """Marked blocks do not run here, so their command lines are checked against the CLI:
    every option is one of the command's; every ``--engine-arg KEY=VALUE`` is a field of the
    installed vLLM's ``EngineArgs`` (where vLLM is installed)."""
    import typer

    from autotts.cli import app

    cli = typer.main.get_command(app)
    fields = None
    if importlib.util.find_spec("vllm") is not None:
        import vllm

        fields = {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    found = list(_cli_commands())
    assert any("--streaming" in words for _, words in found)  # the GPU build is checked too
    problems = []
    for block, words in found:
        command = cli.commands.get(words[1]) if len(words) > 1 else cli
        if command is None:
            problems.append(f"{block.where}: no command {words[1]!r}")
            continue
        if hasattr(command, "commands") and len(words) > 2 and words[2] in command.commands:
            command = command.commands[words[2]]
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for i, word in enumerate(words):
            option = word.startswith("-") and not word.lstrip("-").replace(".", "").isdigit()
            if option and word.split("=")[0] not in known:
                problems.append(f"{block.where}: {' '.join(words[:3])}: unknown {word}")
            if word == "--engine-arg" and fields is not None:
                key = words[i + 1].split("=")[0]
                if key not in fields:
                    problems.append(f"{block.where}: --engine-arg {key}: not an EngineArgs field")
    assert not problems, "\n".join(problems)


def test_the_site_builds_strict(tmp_path):
    """``mkdocs build --strict``: every page in the nav, no broken link or anchor, and every
    object of the API reference found by mkdocstrings."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip(
            "mkdocs is not installed (pip install mkdocs mkdocs-material mkdocstrings[python])"
        )
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (tmp_path / "site" / "reference" / "controllers" / "index.html").is_file()
