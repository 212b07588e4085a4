"""Reading a file's bytes into text the parser accepts, with one clear error when that is impossible."""
from __future__ import annotations

import io
import os
import tokenize
from dataclasses import dataclass
from typing import Optional, Union

DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class SourceError(Exception):
    """A file that cannot be analysed; ``str()`` is the one-line reason (without the path)."""


@dataclass(frozen=True)
class SourceText:
    path: str  # as given / displayed
    text: str  # newlines normalised to "\n"
    raw_newline: str  # the file's own dominant newline ("\n", "\r\n" or "\r")
    encoding: str
    had_bom: bool


def read_bytes(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise SourceError("broken symbolic link") from None
        raise SourceError("no such file") from None
    except OSError as e:
        raise SourceError(f"cannot stat: {e.strerror or e}") from None
    if not os.path.isfile(path):
        raise SourceError("not a regular file")
    if max_bytes and st.st_size > max_bytes:
        raise SourceError(
            f"file too large ({st.st_size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB limit; raise `max-file-size`)"
        )
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except PermissionError:
        raise SourceError("permission denied") from None
    except IsADirectoryError:
        raise SourceError("is a directory") from None
    except OSError as e:
        raise SourceError(f"cannot read: {e.strerror or e}") from None


def decode(path: str, data: bytes) -> SourceText:
    """Decode Python source the way the interpreter would (BOM, PEP 263 cookie, UTF-8 default)."""
    if b"\x00" in data:
        raise SourceError("binary file (contains NUL bytes), not Python source")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as e:
        msg = str(e.msg if hasattr(e, "msg") else e)
        if not msg.startswith("invalid or missing"):
            raise SourceError(f"bad encoding declaration: {msg}") from None
        encoding = "utf-8"  # no declaration and the first lines are not UTF-8: the decode error says where
    had_bom = data.startswith(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8-sig" if encoding == "utf-8-sig" else encoding)
    except (UnicodeDecodeError, LookupError) as e:
        where = ""
        if isinstance(e, UnicodeDecodeError):
            line = data[: e.start].count(b"\n") + 1
            where = f" at line {line}"
        raise SourceError(f"cannot decode as {encoding}{where} (add a coding declaration or re-encode)") from None
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    raw = "\r\n" if crlf > max(cr, lf) else ("\r" if cr > lf else "\n")
    if cr or crlf:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    return SourceText(path, text, raw, encoding, had_bom)


def load(path: str, max_bytes: int = DEFAULT_MAX_BYTES, data: Optional[bytes] = None) -> SourceText:
    if data is None:
        data = read_bytes(path, max_bytes)
    return decode(path, data)


def to_text(obj: Union[str, bytes], path: str = "<string>") -> SourceText:
    if isinstance(obj, bytes):
        return decode(path, obj)
    return decode(path, obj.encode("utf-8"))
