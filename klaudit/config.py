"""``[tool.klaudit]`` in the nearest pyproject.toml, resolved once per run; the CLI overrides it."""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover
    import tomli as tomllib  # type: ignore

from .rules import registry
from .source import DEFAULT_MAX_BYTES

KNOWN_KEYS = {"select", "extend-select", "ignore", "exclude", "extend-exclude", "per-file-ignores", "preview",
              "max-file-size", "budget", "file-budget"}
DEFAULT_EXCLUDE = [".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", "node_modules", "build",
                   "dist", ".eggs", "*.egg-info", "site-packages", ".klaudit_cache", ".mypy_cache",
                   ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints"]


class ConfigError(Exception):
    pass


@dataclass
class Config:
    select: List[str] = field(default_factory=list)
    extend_select: List[str] = field(default_factory=list)
    ignore: List[str] = field(default_factory=list)
    exclude: List[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    per_file_ignores: Dict[str, List[str]] = field(default_factory=dict)
    preview: bool = False
    max_file_size: int = DEFAULT_MAX_BYTES
    budget: float = 2.0  # seconds per term derivation
    file_budget: float = 60.0  # seconds per file
    root: str = "."
    source: Optional[str] = None  # the pyproject.toml it came from
    fixes: bool = False  # build a fix for each fixable finding (--fix, --diff); never read from pyproject

    def selected(self) -> set:
        return registry.resolve_selection(self.select, self.ignore, self.preview, self.extend_select)

    def ignored_for(self, path: str) -> set:
        out = set()
        rel = os.path.relpath(path, self.root) if self.root else path
        for pattern, codes in self.per_file_ignores.items():
            if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(os.path.basename(path), pattern) or \
                    fnmatch.fnmatch(path, pattern):
                out |= registry.expand(codes)
        return out

    def key(self) -> str:
        """What the cache key depends on."""
        return repr((sorted(self.select), sorted(self.extend_select), sorted(self.ignore), self.preview,
                     self.budget, sorted((k, tuple(v)) for k, v in self.per_file_ignores.items()),
                     getattr(self, "fixes", False), self.root))


def find_pyproject(start: str) -> Optional[str]:
    d = os.path.abspath(start)
    if os.path.isfile(d):
        d = os.path.dirname(d)
    while True:
        p = os.path.join(d, "pyproject.toml")
        if os.path.isfile(p):
            try:
                with open(p, "rb") as fh:
                    data = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError):
                data = {}
            if "klaudit" in data.get("tool", {}):
                return p
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def _list(v, key) -> List[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    raise ConfigError(f"`{key}` must be a list of strings")


def load(paths: Sequence[str], explicit: Optional[str] = None) -> Config:
    cfg = Config()
    start = os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else os.getcwd()
    path = explicit or find_pyproject(start)
    if path is None:
        cfg.root = os.getcwd()
        return cfg
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    section = data.get("tool", {}).get("klaudit", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.klaudit] must be a table")
    unknown = set(section) - KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown [tool.klaudit] key(s): {', '.join(sorted(unknown))}")
    cfg.source = path
    cfg.root = os.path.dirname(os.path.abspath(path))
    if "select" in section:
        cfg.select = _list(section["select"], "select")
    if "extend-select" in section:
        cfg.extend_select = _list(section["extend-select"], "extend-select")
    if "ignore" in section:
        cfg.ignore = _list(section["ignore"], "ignore")
    if "exclude" in section:
        cfg.exclude = _list(section["exclude"], "exclude")
    if "extend-exclude" in section:
        cfg.exclude += _list(section["extend-exclude"], "extend-exclude")
    if "per-file-ignores" in section:
        pfi = section["per-file-ignores"]
        if not isinstance(pfi, dict):
            raise ConfigError(f"{path}: `per-file-ignores` must be a table of pattern = [codes]")
        cfg.per_file_ignores = {k: _list(v, f"per-file-ignores.{k}") for k, v in pfi.items()}
    if "preview" in section:
        cfg.preview = bool(section["preview"])
    if "max-file-size" in section:
        v = section["max-file-size"]
        if not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{path}: `max-file-size` must be a positive number of bytes")
        cfg.max_file_size = v
    if "budget" in section:
        cfg.budget = float(section["budget"])
    if "file-budget" in section:
        cfg.file_budget = float(section["file-budget"])
    try:
        cfg.selected()
        for codes in cfg.per_file_ignores.values():
            registry.expand(codes)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg
