"""Run every package README's own commands as a pip user would: from the built wheels, in fresh venvs.

    uv run python .ci/check_readmes.py DIR [README ...]   # DIR: the distributions .ci/check_release.py left;
                                                          # READMEs: only these (default: all)

The READMEs checked are the repository's README.md and each workspace member's. In them, the line right
before a fenced block may mark it:

- ``<!-- readme-test: run -->`` before a ``bash`` block: each command line runs, in order, and must exit 0.
  ``pip install ARGS`` lines are what the README's venv was made with, from DIR's wheels (a member's
  directory, such as ``./examples/plugin``, stands for its distribution). ``butter node ...`` starts a node,
  waits until it listens, starts a second node on 127.0.0.1 given the first as ``--peer`` and waits until the
  second admits the first (its log says ``peer joined``; not for a node on the in-process memory transport); both run
  on while the block's next lines run, and at the block's end each gets SIGINT and must leave gracefully
  (exit 0). A command already run in the same venv is not run again (a node is started again, for the lines
  after it, but without a second node). A file named ``FILE`` exists in the
  working directory.
- ``<!-- readme-test: python expect="TEXT" -->`` before a ``python`` block: the block runs as a program in the
  README's venv, must exit 0 and print TEXT.
- ``<!-- readme-test: skip REASON -->``: not run, for the REASON given.

Every ``bash``/``sh``/``console``/``shell`` block and each README's first ``python`` block must carry a mark,
so a command added to a README is run, or skipped with a reason, on purpose. In each README's venv
``butter --help`` and ``butter plugins`` run too.

A README's venv holds what its ``pip install`` lines name (the distribution the README describes when it has
none); READMEs naming the same packages share one. Network rule: every command runs with
``BUTTER_HOST=127.0.0.1`` and ``BUTTER_DISCOVERY__DRIVERS='["static"]'`` in its environment, so nodes listen on
loopback and never send multicast.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"^<!-- readme-test: (run|python|skip)\b(.*?)-->$")
SHELLS = {"bash", "sh", "console", "shell"}
TIMEOUT = 120.0  # seconds for one command, or for a node to listen / be known
NODE = re.compile(r"^(?:\w+=\S+\s+)*butter node\b")
ENV = {"BUTTER_HOST": "127.0.0.1", "BUTTER_DISCOVERY__DRIVERS": '["static"]', "NO_COLOR": "1", "COLUMNS": "200"}


class Failed(Exception):
    """A README command failed; the message says which README, which command, and its output."""


@dataclass
class Block:
    readme: Path
    line: int  # of the opening fence, 1-based
    lang: str
    mark: str  # "run", "python", "skip" or "" (unmarked)
    argument: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.readme.relative_to(ROOT)}:{self.line}"


def blocks(readme: Path) -> list[Block]:
    """The fenced blocks of one README, with their marks."""
    found: list[Block] = []
    lines = readme.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, end = i, i + 1
        while not lines[end].startswith("```"):
            end += 1
        mark = MARK.match(lines[start - 1].strip()) if start else None
        found.append(Block(readme, start + 1, fence[1], mark[1] if mark else "", mark[2].strip() if mark else "",
                           "\n".join(lines[start + 1 : end])))
        i = end + 1
    return found


def commands(text: str) -> list[str]:
    """A bash block's command lines: continuations joined, blank lines and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Venvs:
    """One venv per set of installed requirements, each from DIR's wheels only for this repository's packages."""

    dist: Path
    work: Path
    members: dict[str, str]  # member directory -> distribution name
    made: dict[tuple[str, ...], Path] = field(default_factory=dict)
    done: set[tuple[Path, str]] = field(default_factory=set)  # (venv, command) already run

    def constraints(self) -> Path:
        path = self.work / "constraints.txt"  # every distribution of ours from its wheel, never from an index
        wheels = [*self.dist.glob("*.whl"), *self.dist.glob("examples/*.whl")]
        path.write_text("".join(f"{w.name.split('-')[0].replace('_', '-')} @ {w.as_uri()}\n" for w in wheels))
        return path

    def requirement(self, arg: str) -> str:
        member = os.path.normpath(arg)
        return self.members.get(member, arg)

    def get(self, requirements: list[str]) -> Path:
        key = tuple(sorted(self.requirement(r) for r in requirements))
        if key not in self.made:
            venv = self.work / f"venv{len(self.made)}"
            subprocess.run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
            subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                            "--constraint", str(self.constraints()), *key], check=True)
            print(f"  venv {venv.name}: pip install {' '.join(key)}", flush=True)
            self.made[key] = venv
        return self.made[key]


def environment(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUTTER_", "VIRTUAL_ENV", "UV_"))}
    env.update(ENV, PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv))
    return env


def run(command: str, venv: Path, cwd: Path, where: str) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=environment(venv), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise Failed(f"{where}: `{command}` exited {done.returncode}:\n{output}")
    return output


@dataclass
class Node:
    command: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def start_node(command: str, venv: Path, cwd: Path, where: str) -> tuple[Node, str, str]:
    """Start ``butter node ...`` and wait until it listens: (node, HOST:PORT, its node id)."""
    log = cwd / f"node-{time.monotonic_ns()}.log"
    assignments = re.match(r"(\w+=\S+\s+)*", command)[0]  # type: ignore[index]  # FOO=1 exec butter node
    with log.open("w") as out:  # the node writes to its own copy of the descriptor
        process = subprocess.Popen(["bash", "-c", f"{assignments}exec {command[len(assignments):]}"], cwd=cwd,
                                   env=environment(venv), stdout=out, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
    node = Node(command, process, log)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        text = node.output()
        found = re.search(r"^butter node ([0-9a-f]+)\n\s+listening on (\S+)", text, re.MULTILINE)
        if found:
            return node, found[2], found[1]
        if process.poll() is not None:
            raise Failed(f"{where}: `{command}` exited {process.returncode} before listening:\n{text}")
        time.sleep(0.2)
    stop(node, where)
    raise Failed(f"{where}: `{command}` did not listen within {TIMEOUT:.0f} s:\n{node.output()}")


def stop(node: Node, where: str) -> None:
    """SIGINT, as Ctrl-C: the node must leave gracefully and exit 0."""
    if node.process.poll() is None:
        os.killpg(node.process.pid, signal.SIGINT)
    try:
        code = node.process.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(node.process.pid, signal.SIGKILL)
        code = node.process.wait()
    if code != 0 or "left gracefully" not in node.output():
        raise Failed(f"{where}: `{node.command}` did not leave gracefully on SIGINT (exit {code}):\n{node.output()}")


def second_node(first_id: str, address: str, venv: Path, cwd: Path, where: str) -> Node:
    """Start a second node given ADDRESS as a peer; wait until its host manager admits the first one (which
    takes a host-quality request and its answer, over the secure channel)."""
    command = f"butter node --host 127.0.0.1 --port 0 --peer {address}"
    node, _, _ = start_node(command, venv, cwd, where)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if f"peer joined: {first_id[:8]}" in node.output():
            return node
        time.sleep(0.2)
    stop(node, where)
    raise Failed(f"{where}: a second node never admitted the node at {address}:\n{node.output()}")


def installs(readme_blocks: list[Block]) -> list[str]:
    """Every requirement the README's ``pip install`` lines name, in its run blocks."""
    return [arg for block in readme_blocks if block.mark == "run" for command in commands(block.text)
            if command.startswith("pip install ") for arg in shlex.split(command, comments=True)[2:]]


def check_readme(readme: Path, default: str, venvs: Venvs) -> None:
    found = blocks(readme)
    first_python = next((b for b in found if b.lang == "python"), None)
    for block in found:
        if not block.mark and (block.lang in SHELLS or block is first_python):
            raise Failed(f"{block.where}: mark this ```{block.lang} block: <!-- readme-test: run --> "
                         "(or python / skip REASON) on the line before it")
        if block.mark == "skip" and not block.argument:
            raise Failed(f"{block.where}: readme-test: skip needs a reason")
    venv = venvs.get(installs(found) or [default])
    print(f"{readme.relative_to(ROOT)} (venv {venv.name})", flush=True)
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        cwd = Path(tmp)
        (cwd / "FILE").write_bytes(b"a file a README stores\n" * 100)
        for command in ("butter --help", "butter plugins"):
            run(command, venv, cwd, str(readme.relative_to(ROOT)))
        for block in found:
            if block.mark == "run":
                run_block(block, venvs, venv, cwd)
            elif block.mark == "python":
                expect = re.fullmatch(r'expect="(.*)"', block.argument)
                script = cwd / "example.py"
                script.write_text(block.text)
                output = run(f"python {script.name}", venv, cwd, block.where)
                if expect and expect[1] not in output:
                    raise Failed(f"{block.where}: the example did not print {expect[1]!r}:\n{output}")
                print(f"  {block.where}: python example ok", flush=True)


def run_block(block: Block, venvs: Venvs, venv: Path, cwd: Path) -> None:
    nodes: list[Node] = []
    try:
        for command in commands(block.text):
            key = (venv, shlex.join(shlex.split(command, comments=True)))
            seen = key in venvs.done
            venvs.done.add(key)
            if command.startswith("pip install "):
                continue  # the venv holds what the README's pip install lines name (see installs)
            if NODE.match(command):
                node, address, node_id = start_node(command, venv, cwd, block.where)
                nodes.append(node)
                if "(memory transport" in node.output() or seen:  # in-process: no other process can reach it
                    print(f"  {block.where}: `{command}` listens on {address}", flush=True)
                    continue
                nodes.append(second_node(node_id, address, venv, cwd, block.where))
                print(f"  {block.where}: `{command}` listens on {address}; a second node joined it", flush=True)
            elif not seen:
                run(command, venv, cwd, block.where)
                print(f"  {block.where}: `{command}` ok", flush=True)
    finally:
        for node in reversed(nodes):
            stop(node, block.where)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    dist = Path(sys.argv[1]).resolve()
    only = {Path(arg).resolve() for arg in sys.argv[2:]}
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = {
        member: tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]["name"]
        for member in root["tool"]["uv"]["workspace"]["members"]
    }
    readmes = [(ROOT / "README.md", "butter-stack"), *((ROOT / m / "README.md", n) for m, n in members.items())]
    readmes = [(readme, default) for readme, default in readmes if not only or readme in only]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="readmes-") as work:
        venvs = Venvs(dist, Path(work), members)
        try:
            for readme, default in readmes:
                check_readme(readme, default, venvs)
        except (Failed, subprocess.CalledProcessError, subprocess.TimeoutExpired) as failure:
            sys.exit(f"check_readmes: {failure}")
    print(f"readmes: {len(readmes)} READMEs' commands pass from wheels in {len(venvs.made)} venvs "
          f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
