"""Which files a run lints: Python files and notebooks under the given paths, minus exclusions.

Directory symlinks are not followed (no loops); a path that cannot be listed or does not exist is an
error for that path, and the walk goes on.  A file whose name is not valid UTF-8 is an error too (shown
with U+FFFD in place of the bad bytes): every report format writes UTF-8.
"""
from __future__ import annotations

import errno
import fnmatch
import os
from typing import Iterable, List, Tuple

from .model import FileError

SOURCE_SUFFIXES = (".py", ".pyi", ".ipynb")
CONFIG_SUFFIXES = (".yaml", ".yml")


def _excluded(path: str, patterns: Iterable[str], root: str) -> bool:
    name = os.path.basename(path.rstrip(os.sep))
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        rel = path
    for p in patterns:
        if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.rstrip("/") + "/*"):
            return True
    return False


def _link_error(path: str) -> str:
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
    return "broken symbolic link"


def _valid_name(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes, kept by the OS as surrogate escapes
        return False


def _shown(path: str) -> str:
    return path if _valid_name(path) else os.fsencode(path).decode("utf-8", "replace")


def discover(paths: Iterable[str], exclude: Iterable[str] = (), root: str = ".",
             with_configs: bool = True) -> Tuple[List[str], List[str], List[FileError]]:
    """(source files, config files, errors), each list sorted and without duplicates."""
    exclude = list(exclude)
    sources, configs, errors = [], [], []
    seen = set()

    def add(lst, p):
        key = os.path.normpath(p)
        if key not in seen:
            seen.add(key)
            lst.append(p)

    for given in paths:
        if not os.path.lexists(given):
            errors.append(FileError(given, "no such file or directory"))
            continue
        if os.path.isdir(given):
            _walk(given, exclude, root, sources, configs, errors, add, with_configs)
        elif os.path.islink(given) and not os.path.exists(given):
            errors.append(FileError(given, _link_error(given)))
        else:
            add(sources, given)  # an explicitly named file is always linted
    bad = [p for p in sources if not _valid_name(p)]
    errors.extend(FileError(p, "file name is not valid UTF-8 (rename the file to lint it)") for p in bad)
    sources = [p for p in sources if _valid_name(p)]
    configs = [p for p in configs if _valid_name(p)]
    errors = [FileError(_shown(e.path), e.message) for e in errors]
    return sorted(sources), sorted(configs), errors


def _walk(top, exclude, root, sources, configs, errors, add, with_configs):
    def onerror(e: OSError):
        errors.append(FileError(e.filename or top, f"cannot list directory: {e.strerror or e}"))

    for dirpath, dirnames, filenames in os.walk(top, onerror=onerror, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if _excluded(full, exclude, root):
                continue
            if os.path.islink(full):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            if _excluded(full, exclude, root):
                continue
            if f.endswith(SOURCE_SUFFIXES):
                if os.path.islink(full) and not os.path.exists(full):
                    errors.append(FileError(full, _link_error(full)))
                    continue
                add(sources, full)
            elif with_configs and f.endswith(CONFIG_SUFFIXES):
                add(configs, full)
