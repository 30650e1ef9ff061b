"""The README runs as written.

Convention (README.md's fenced code blocks):

- A ```bash block is tested: every command in it that starts with `actsearch` runs as written
  (`bash -c LINE`, backslash continuations joined) in one fresh temporary directory, with the repo's
  `.venv/bin` first on PATH, and must exit 0. Blocks of quick commands only (seconds each).
- A ```python block is tested: it runs as written in a fresh interpreter (the repo's python) in a
  temporary directory and must exit 0.
- A block right after the line `<!-- test: skip -->` is not run: the set-up commands (`make test`,
  `make search`), commands that train (eval, search, validate, ...), run directories that do not
  exist on a fresh machine, and a Ray cluster. Blocks without a language (sample output) never run.
  A bash block that is not skipped may hold only `actsearch` commands (checked).

The whole file takes about a minute on 2 cores (each command imports torch).

Also checked: the README stays a short user's guide (at most 260 lines) with exactly two set-up
commands, `make test` and `make search`, both Makefile targets, and no other `make` command.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP_MARKER = "<!-- test: skip -->"
MAX_LINES = 260


def code_blocks(text: str):
    """(language, body, skipped) for every fenced block of the README, in order."""
    blocks = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang = m.group(1)
        prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        blocks.append((lang, "\n".join(lines[i + 1:j]), prev == SKIP_MARKER))
        i = j + 1
    return blocks


def shell_commands(body: str):
    """Commands of a bash block, with backslash continuations joined."""
    commands, current = [], ""
    for line in body.split("\n"):
        current += line
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            commands.append(current.strip())
        current = ""
    return commands


BLOCKS = code_blocks(README.read_text())
SHELL = [cmd for lang, body, skip in BLOCKS if lang == "bash" and not skip
         for cmd in shell_commands(body) if cmd.startswith("actsearch")]
PYTHON = [body for lang, body, skip in BLOCKS if lang == "python" and not skip]


def _env():
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    venv_bin = ROOT / ".venv" / "bin"
    env["PATH"] = os.pathsep.join([str(venv_bin), bindir, env.get("PATH", "")])
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
    return env


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


def test_readme_is_a_short_guide_with_the_two_setup_commands():
    text = README.read_text()
    assert len(text.split("\n")) <= MAX_LINES
    make_lines = [line.split("#")[0].strip() for lang, body, _ in BLOCKS if lang == "bash"
                  for line in body.split("\n") if line.strip().startswith("make")]
    assert sorted(make_lines) == ["make search", "make test"], make_lines
    setup = text.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    setup_blocks = code_blocks(setup)
    assert len(setup_blocks) == 1
    setup_commands = [c.split("#")[0].strip() for c in shell_commands(setup_blocks[0][1])]
    assert setup_commands == ["make test", "make search"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^search:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_has_tested_examples():
    untested = [cmd for lang, body, skip in BLOCKS if lang == "bash" and not skip
                for cmd in shell_commands(body) if not cmd.startswith("actsearch")]
    assert not untested, f"mark these blocks {SKIP_MARKER} or make them actsearch commands: {untested}"
    assert len(PYTHON) >= 1
    assert len(SHELL) >= 5
    assert any("--json" in cmd for cmd in SHELL)


@pytest.mark.parametrize("source", PYTHON, ids=[f"python{i}" for i in range(len(PYTHON))])
def test_python_example_runs_as_written(source, workdir):
    proc = subprocess.run([sys.executable, "-c", source], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("command", SHELL)
def test_shell_command_runs_as_written(command, workdir):
    proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    if "--json" in command.split("#")[0].split():
        json.loads(proc.stdout)
    output = re.search(r"(?:-o|--output)\s+(\S+)", command.split("#")[0])
    if output:
        assert (workdir / output.group(1)).stat().st_size > 0
