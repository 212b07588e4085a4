"""The content-hash cache in ``.klaudit_cache/``.

Per-file results (the module summary, suppressions, errors) are keyed by klaudit's version, the
configuration that affects analysis, the file's path and its bytes; sympy derivations are keyed by
the canonical expression; a whole run's report by the keys of every file it read.  Writes go to a
temporary file renamed into place, so two concurrent runs never see a torn entry (the worst case is
that both compute the same entry).  Anything unreadable is treated as a miss.
"""
from __future__ import annotations

import dataclasses
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


_FIELDS: dict = {}
_SCALARS = (bool, int, float, str, bytes, type(None))


def _field_names(t) -> tuple:
    names = _FIELDS.get(t)
    if names is None:
        names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(t))
    return names


def stable_digest(obj: Any, memo: Optional[dict] = None) -> str:
    """A digest of a value's content, independent of how its parts are shared in memory and of the
    process's hash seed (pickle bytes depend on both): dataclasses, tuples, lists, dicts, sets and
    scalars, memoised by identity for dataclass nodes (expression DAGs share subtrees)."""
    if memo is None:
        memo = {}
    blake = hashlib.blake2b

    def enc(x) -> bytes:
        t = type(x)
        if t in _SCALARS:
            return f"{t.__name__}:{x!r}".encode("utf-8", "surrogatepass")
        if t is tuple or t is list:
            h = blake(b"(" if t is tuple else b"[", digest_size=16)
            for y in x:
                h.update(enc(y))
            return h.digest()
        if hasattr(t, "__dataclass_fields__"):
            hit = memo.get(id(x))
            if hit is not None and hit[0] is x:
                return hit[1]
            h = blake(t.__qualname__.encode(), digest_size=16)
            for name in _field_names(t):
                h.update(b"|")
                h.update(enc(getattr(x, name)))
            d = h.digest()
            memo[id(x)] = (x, d)
            return d
        if isinstance(x, _SCALARS):  # subclasses (enums of str, ...)
            return f"{t.__qualname__}:{x!r}".encode("utf-8", "surrogatepass")
        if isinstance(x, (tuple, list)):
            h = blake(b"(", digest_size=16)
            for y in x:
                h.update(enc(y))
            return h.digest()
        if isinstance(x, dict):
            h = blake(b"{", digest_size=16)
            for k, v in sorted(((enc(k), enc(v)) for k, v in x.items())):
                h.update(k)
                h.update(v)
            return h.digest()
        if isinstance(x, (set, frozenset)):
            h = blake(b"s", digest_size=16)
            for y in sorted(enc(y) for y in x):
                h.update(y)
            return h.digest()
        return f"{t.__qualname__}:{x!r}".encode("utf-8", "surrogatepass")

    return blake(enc(obj), digest_size=16).hexdigest()


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
            self._prune_other_versions()
        except OSError:
            self.ok = False

    def _prune_other_versions(self) -> None:
        """Entries written by another klaudit version or code are never read again: remove them so
        the cache does not grow with every upgrade (best effort; a concurrent run may recreate one)."""
        top = os.path.dirname(self.base)
        mine = os.path.basename(self.base)
        try:
            names = os.listdir(top)
        except OSError:
            return
        for n in names:
            if n != mine and n.startswith("v") and os.path.isdir(os.path.join(top, n)):
                shutil.rmtree(os.path.join(top, n), ignore_errors=True)

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
