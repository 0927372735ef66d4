"""The fenced code blocks of a Markdown page, for the tests that run or parse what the README
and docs/ show."""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def blocks(path: Path, *languages: str) -> list[str]:
    """The bodies of the page's blocks fenced with one of ``languages`` ("" for none)."""
    return [body for lang, body in BLOCK.findall(path.read_text(encoding="utf-8"))
            if lang in languages]


def block_after(path: Path, heading: str) -> list[str]:
    """The lines of the first fenced block after ``heading``."""
    text = path.read_text(encoding="utf-8").split(heading, 1)[1]
    return BLOCK.search(text).group(2).strip("\n").splitlines()
