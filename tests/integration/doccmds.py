"""Find the `tfops ...` command lines written in the documents, so tests run what users read.

Sources: shell code blocks (```sh, ```bash, ...) in Markdown, `backtick spans` on any line
(prose, tables, YAML blocks, comments of the files in config/), and `ExecStart=` lines in the
systemd unit. A command line is a
shell command whose program is `tfops` (any path to it), possibly behind `sudo -u USER`,
`env VAR=...`, `exec`, `runuser -u USER --`, or inside `sh -c '...'`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_FENCES = {"sh", "bash", "shell", "console"}
_SPAN = re.compile(r"`([^`\n]+)`")
_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}


@dataclass(frozen=True)
class DocCommand:
    source: str  # file:line, for the failure message
    text: str  # the command line as written
    args: tuple[str, ...]  # what follows the `tfops` program word


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "config").iterdir())]


def commands_in(path: Path) -> list[DocCommand]:
    text = path.read_text()
    name = str(path.relative_to(ROOT))
    if path.suffix == ".md":
        return _markdown_commands(name, text)
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("ExecStart="):
            found += _commands(f"{name}:{number}", line.removeprefix("ExecStart=").lstrip("-@+!:"))
        for span in _SPAN.findall(line):  # e.g. a YAML comment's `tfops check-config`
            found += _commands(f"{name}:{number}", span)
    return found


def exec_start(path: Path) -> str:
    """The unit's ExecStart command line, exactly one."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, f"{path}: expected one ExecStart= line, found {lines}"
    return lines[0].removeprefix("ExecStart=")


def _markdown_commands(name: str, text: str) -> list[DocCommand]:
    found: list[DocCommand] = []
    fence: str | None = None
    pending = ""  # a shell line continued with a backslash
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else (line.strip().removeprefix("```").strip() or "text")
            continue
        if fence in SHELL_FENCES:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found += _commands(f"{name}:{number}", pending + line)
            pending = ""
            continue
        for span in _SPAN.findall(line):
            found += _commands(f"{name}:{number}", span)
    return found


def _commands(source: str, line: str) -> list[DocCommand]:
    try:
        tokens = _tokens(line)
    except ValueError:  # not shell (an unmatched quote in prose): not a command line
        return []
    found = []
    for segment in _segments(tokens):
        args = _tfops_args(segment)
        if args is not None:
            found.append(DocCommand(source, line.strip(), tuple(args)))
    return found


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _segments(tokens: list[str]) -> list[list[str]]:
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def _tfops_args(words: list[str]) -> list[str] | None:
    """The arguments after the program `tfops`, or None when the program is something else."""
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("sudo", "runuser"):
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in ("-u", "-g") else 1  # `--` ends the options: skipped too
        elif word in ("env", "exec"):
            i += 1
        elif "=" in word and not word.startswith("-"):
            i += 1  # VAR=value before the program
        elif word == "sh" and words[i + 1 : i + 2] == ["-c"] and i + 2 < len(words):
            inner = [cmd.args for cmd in _commands("", words[i + 2])]
            return list(inner[-1]) if inner else None
        else:
            break
    if i < len(words) and Path(words[i]).name == "tfops":
        return words[i + 1 :]
    return None
