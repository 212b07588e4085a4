"""flake8 plugin: ``flake8 --select KL`` reports klaudit's findings.

Registered as the ``KL`` entry of ``flake8.extension``.  flake8 hands the plugin the lines it has
already read; they are parsed once with libcst (flake8's ``ast`` tree is not used: klaudit's analysis
works on libcst) and run through the same pipeline as ``klaudit check`` on that one file, with the
``[tool.klaudit]`` configuration found from the file upward.  flake8 applies its own ``--select``,
``--ignore`` and ``# noqa``; klaudit's own suppression comments work as well.  Analyses that link
several files (summaries of functions defined elsewhere) see only the one file here.

A file klaudit cannot analyse produces nothing here (flake8 reports syntax errors as E999 itself).
"""
from __future__ import annotations

import os
from typing import Iterator, List, Tuple

from . import __version__

_CONFIGS: dict = {}  # directory -> klaudit configuration (flake8 calls the plugin once per file)


class Plugin:
    name = "klaudit"
    version = __version__

    def __init__(self, tree, filename: str, lines: List[str]) -> None:  # ``tree``: flake8's ast, unused
        self.filename = filename
        self.lines = lines

    def run(self) -> Iterator[Tuple[int, int, str, type]]:
        for line, col, text in findings(self.filename, "".join(self.lines)):
            yield line, col, text, type(self)


def findings(filename: str, text: str) -> List[Tuple[int, int, str]]:
    """(line, 0-based column, "KLxxx message") for the source ``text`` of ``filename``."""
    try:
        return _findings(filename, text)
    except Exception:  # a linter plugin must never take flake8 down
        return []


def _findings(filename: str, text: str) -> List[Tuple[int, int, str]]:
    from . import engine
    from .config import ConfigError, load
    from .source import SourceText

    if filename in ("stdin", "-", None):
        start, path = os.getcwd(), "stdin"
    else:
        start, path = os.path.dirname(os.path.abspath(filename)), filename
    cfg = _CONFIGS.get(start)
    if cfg is None:
        try:
            cfg = load([start])
        except ConfigError:  # flake8 has no place for it; `klaudit check` reports it
            from .config import Config

            cfg = Config(root=start)
        _CONFIGS[start] = cfg
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    result = engine.analyze_source(SourceText(path, text, "\n", "utf-8", False), cfg.root)
    if result.summary is None:
        return []
    terms = engine.collect_terms([result], cfg)
    out = []
    for f in engine.apply_rules(terms, cfg, [result]):
        out.append((f.line, max(f.column - 1, 0), f"{f.code} {f.message}"))
    return out
