"""Documentation that cannot drift: every fenced block of README.md and docs/**/*.md.

The convention (binding, see the README's "Documentation" section and docs/dev/CONTRACTS.md):

* ```` ```python ````: runnable; all python blocks of one file run in order in one
  interpreter (later blocks see the names of earlier ones), as ``__main__``;
* ```` ```console ````: shell commands, one per line (``\\`` continuations, ``#``
  comments), each run with bash and must exit 0;
* ```` ```text ````: synopses, output, placeholders (``<BkgOnly.json>``): not executed;
* ```` ```json ```` / ```` ```toml ````: data, must parse;
* a line ``<!-- docs-test: network -->`` right before a fence: the block runs against the
  local HEPData stand-in server (``tests/hepdata_server.py``, on 127.0.0.1) through
  ``RECASTKIT_HEPDATA_URL`` / ``RECASTKIT_DOI_URL``; every other block runs with those
  pointing at a closed port, so an example that needs the network without saying so fails;
* a line ``<!-- docs-test: output -->`` right before a ```` ```text ```` block: that block
  is the output of the runnable block before it; each of its lines (spaces normalised)
  must appear in that output in order (as a whole line or a part of one: timings may
  follow), a line ``...`` stands for any lines.

Blocks run from a scratch folder laid out like the repository root: ``fixtures/``,
``grids/`` and ``docs/`` are links to the repository's, ``../shared/hepdata`` to the real
likelihoods, the ``recastkit`` of this interpreter's environment is first on PATH, and the
cache is a fresh folder per file.  Every failure names ``file:line`` of the block.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = ("python", "console", "text", "json", "toml")
NETWORK = "<!-- docs-test: network -->"
OUTPUT = "<!-- docs-test: output -->"
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[^`\s]*)\s*$")


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None  # the docs-test comment right before the fence, if any

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, fence, indent = i, m["fence"], len(m["indent"])
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        if i >= len(lines):
            pytest.fail(f"{path.relative_to(ROOT)}:{start + 1}: unclosed code fence")
        before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = before if before.startswith("<!-- docs-test:") else None
        out.append(Block(path, start + 1, m["lang"], "\n".join(body) + "\n", marker))
        i += 1
    return out


ALL = [b for path in DOCS for b in blocks(path)]


def test_the_harness_sees_the_docs():
    assert (ROOT / "README.md") in DOCS and len(DOCS) >= 10
    runnable = [b for b in ALL if b.lang in ("python", "console")]
    assert len(runnable) >= 20, [b.where for b in runnable]


def test_every_fence_says_what_it_is():
    untagged = [f"{b.where}: ```{b.lang}" for b in ALL if b.lang not in LANGUAGES]
    assert not untagged, (
        "tag every fence python, console, text, json or toml (see tests/test_docs.py):\n"
        + "\n".join(untagged)
    )
    misplaced = [
        b.where for b in ALL if b.marker not in (None, NETWORK, OUTPUT) or (
            b.marker == OUTPUT and b.lang != "text") or (
            b.marker == NETWORK and b.lang not in ("python", "console"))
    ]  # fmt: skip
    assert not misplaced, f"unknown or misplaced docs-test markers: {misplaced}"


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.lang in ("json", "toml")], ids=lambda b: b.where
)
def test_data_blocks_parse(block: Block):
    try:
        if block.lang == "json":
            json.loads(block.code)
        else:
            tomllib.loads(block.code)
    except ValueError as err:
        pytest.fail(f"{block.where}: the {block.lang} block does not parse: {err}")


# ---------------------------------------------------------------------------------------
# running the examples


def console_commands(block: Block) -> list[tuple[int, str]]:
    """(line, command) of a console block: ``\\`` continuations joined, comments dropped."""
    commands: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for offset, raw in enumerate(block.code.splitlines(), 1):
        line = raw.rstrip()
        if not pending:
            first = block.line + offset
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        commands.append((first, " ".join(p.strip() for p in pending)))
        pending = []
    assert not pending, f"{block.where}: the last command ends with a continuation"
    return commands


_DRIVER = r"""
import contextlib, io, json, sys, traceback

def main():
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    for line in sys.stdin:
        request = json.loads(line)
        out = io.StringIO()
        error = ""
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(request["code"], request["where"], "exec"), ns)
        except BaseException:
            error = traceback.format_exc(limit=-6)
        sys.__stdout__.write("\0" + json.dumps({"out": out.getvalue(), "error": error}) + "\n")
        sys.__stdout__.flush()

if __name__ == "__main__":
    main()
"""


class Python:
    """One interpreter per Markdown file: python blocks share their names, in order."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        driver = cwd.parent / "docs_driver.py"
        driver.write_text(_DRIVER)
        self.stderr = open(cwd.parent / "python.stderr", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(driver)],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def run(self, block: Block, env: dict[str, str]) -> str:
        setup = "".join(f"import os; os.environ[{k!r}] = {v!r}\n" for k, v in env.items())
        assert self.proc.stdin is not None and self.proc.stdout is not None
        for code, where in ((setup, f"{block.where} (environment)"), (block.code, block.where)):
            self.proc.stdin.write(json.dumps({"code": code, "where": where}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            while line and not line.startswith("\0"):  # output of worker processes
                line = self.proc.stdout.readline()
            if not line:
                self.stderr.seek(0)
                pytest.fail(f"{block.where}: the interpreter died:\n{self.stderr.read()[-3000:]}")
            reply = json.loads(line[1:])
            if reply["error"]:
                self.stderr.seek(0)
                log = self.stderr.read()[-2000:]
                pytest.fail(f"{block.where}: the python block failed:\n{reply['error']}\n{log}")
        return reply["out"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


def _normal(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def check_output(block: Block, shown: Block, actual: str) -> None:
    """Each line of ``shown`` appears in ``actual`` in order; ``...`` matches any lines."""
    got = _normal(actual)
    pos = 0
    for want in _normal(shown.code):
        if want == "...":
            continue
        found = next((i for i in range(pos, len(got)) if want in got[i]), None)
        if found is not None:
            pos = found + 1
        else:
            pytest.fail(
                f"{shown.where}: the output shown for {block.where} is not what it prints: "
                f"no line {want!r} (in order) in:\n" + "\n".join(got[-40:])
            )


@pytest.fixture(scope="session")
def hepdata_server(shared_hepdata: Path, tmp_path_factory: pytest.TempPathFactory):
    """The HEPData stand-in: sbottom (ins1748602, its real archive) and 1Lbb (ins1755298)."""
    from hepdata_server import HEPDataServer, make_tar

    folder = tmp_path_factory.mktemp("archives")
    lbb = make_tar(
        folder / "1Lbb.tar.gz",
        {
            f"1Lbb-likelihoods/{name}": (shared_hepdata / "1Lbb" / name).read_bytes()
            for name in ("BkgOnly.json", "patchset.json")
        },
    )
    sbottom = shared_hepdata / "_archives" / "sbottom_multib_hepdata.89408.v3.r2.tar.gz"
    with HEPDataServer() as server:
        server.add_record(89408, 1748602, 3)
        server.add_resource(89408, 91234, sbottom, "likelihoods.tar.gz",
                            doi="10.17182/hepdata.89408.v3/r2")  # fmt: skip
        server.add_record(90607, 1755298, 2)
        server.add_resource(90607, 95748, lbb, "1Lbb-likelihoods.tar.gz",
                            doi="10.17182/hepdata.90607.v2/r2")  # fmt: skip
        yield server


def _scratch(tmp_path: Path, shared_hepdata: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("fixtures", "grids", "docs"):
        (root / name).symlink_to(ROOT / name, target_is_directory=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "hepdata").symlink_to(shared_hepdata, target_is_directory=True)
    return root


RUNNABLE = [p for p in DOCS if any(b.lang in ("python", "console") for b in blocks(p))]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_as_written(path: Path, tmp_path: Path, shared_hepdata: Path, request):
    root = _scratch(tmp_path, shared_hepdata)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update(
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
        RECASTKIT_CACHE=str(tmp_path / "cache"),
        MPLBACKEND="Agg",
        PYTHONPATH=str(ROOT) + os.pathsep + str(ROOT / "tests"),
    )
    env.pop("COLUMNS", None)
    offline = {
        "RECASTKIT_HEPDATA_URL": "http://127.0.0.1:9",
        "RECASTKIT_DOI_URL": "http://127.0.0.1:9",
    }
    python: Python | None = None
    timings: list[tuple[str, float]] = []
    previous: tuple[Block, str] | None = None
    try:
        for block in blocks(path):
            if block.marker == OUTPUT and previous is not None:
                check_output(previous[0], block, previous[1])
                continue
            if block.lang not in ("python", "console"):
                continue
            started = time.perf_counter()
            urls = dict(offline)
            if block.marker == NETWORK:
                server = request.getfixturevalue("hepdata_server")
                urls = {"RECASTKIT_HEPDATA_URL": server.url, "RECASTKIT_DOI_URL": server.doi_url}
            if block.lang == "python":
                if python is None:
                    python = Python(root, {**env, **urls})
                previous = (block, python.run(block, urls))
                timings.append((block.where, time.perf_counter() - started))
                continue
            outputs = []
            for line, command in console_commands(block):
                proc = subprocess.run(
                    ["bash", "-e", "-o", "pipefail", "-c", command],
                    cwd=root,
                    env={**env, **urls},
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if proc.returncode != 0:
                    pytest.fail(
                        f"{path.relative_to(ROOT)}:{line}: `{command}` exited with "
                        f"{proc.returncode}:\n{textwrap.indent(proc.stderr[-3000:], '  ')}"
                    )
                outputs.append(proc.stdout + proc.stderr)
            previous = (block, "\n".join(outputs))
            timings.append((block.where, time.perf_counter() - started))
    finally:
        if python is not None:
            python.close()
        # pytest -s shows where the time goes (the docs tests should stay near 2 minutes)
        print("\n".join(f"{t:6.1f} s  {where}" for where, t in timings))
