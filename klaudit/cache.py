"""The content-hash cache in ``.klaudit_cache/``.

Per-file results (the module summary, suppressions, errors) are keyed by klaudit's version, the
configuration that affects analysis, the file's path and its bytes; sympy derivations are keyed by
the canonical expression; a whole run's report by the keys of every file it read.  Writes go to a
temporary file renamed into place, so two concurrent runs never see a torn entry (the worst case is
that both compute the same entry).  Anything unreadable is treated as a miss.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from typing import Any, Optional

from . import __version__

DIRNAME = ".klaudit_cache"
FORMAT = 1


def key(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, bytes):
            h.update(p)
        else:
            h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


_CODE = None


def code_fingerprint() -> str:
    """klaudit's own code (names, sizes, mtimes of its modules): an edited analyzer never reads results
    an older one cached, even at the same version number."""
    global _CODE
    if _CODE is None:
        here = os.path.dirname(os.path.abspath(__file__))
        parts = []
        for d, dirs, files in os.walk(here):
            dirs[:] = sorted(x for x in dirs if x not in ("__pycache__", "probe"))
            for f in sorted(files):
                if f.endswith(".py"):
                    try:
                        st = os.stat(os.path.join(d, f))
                        parts.append(f"{os.path.relpath(os.path.join(d, f), here)}:{st.st_size}:{st.st_mtime_ns}")
                    except OSError:
                        pass
        _CODE = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return _CODE


class Cache:
    def __init__(self, root: str, config_key: str = ""):
        self.base = os.path.join(root, DIRNAME, f"v{__version__}-f{FORMAT}-{code_fingerprint()}")
        self.config_key = config_key
        self.ok = True
        try:
            os.makedirs(self.base, exist_ok=True)
            gi = os.path.join(root, DIRNAME, ".gitignore")
            if not os.path.exists(gi):
                self._write_text(gi, "*\n")
        except OSError:
            self.ok = False

    # ------------------------------------------------------------------------------ primitives
    def _path(self, kind: str, k: str) -> str:
        return os.path.join(self.base, kind, k[:2], k)

    def _write_bytes(self, path: str, data: bytes) -> None:
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _write_text(self, path: str, text: str) -> None:
        self._write_bytes(path, text.encode("utf-8"))

    def get_pickle(self, kind: str, k: str) -> Optional[Any]:
        if not self.ok:
            return None
        try:
            with open(self._path(kind, k), "rb") as fh:
                return pickle.load(fh)
        except Exception:
            return None

    def put_pickle(self, kind: str, k: str, value: Any) -> None:
        if not self.ok:
            return
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return
        self._write_bytes(self._path(kind, k), data)

    # ------------------------------------------------------------------ derivations (JSON, small)
    def get(self, k: str):
        if not self.ok:
            return None
        try:
            with open(self._path("derive", key(k)), encoding="utf-8") as fh:
                return json.load(fh)
        except Exception:
            return None

    def put(self, k: str, value: dict) -> None:
        if self.ok:
            try:
                self._write_text(self._path("derive", key(k)), json.dumps(value))
            except (TypeError, ValueError):
                pass


def clean(root: str) -> bool:
    d = os.path.join(root, DIRNAME)
    if os.path.isdir(d):
        shutil.rmtree(d, ignore_errors=True)
        return True
    return False
