"""libcst parsing with every failure turned into a one-line reason."""
from __future__ import annotations

import sys

from .source import SourceError


class SourceSyntaxError(SourceError):
    """A syntax error at a known place (1-based line and column)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def parse_module(text: str):
    """Parse ``text`` into a ``libcst.Module``; raise SourceError with a readable reason."""
    import libcst

    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old, 20000))
        return libcst.parse_module(text)
    except libcst.ParserSyntaxError as e:
        msg = str(getattr(e, "message", "") or "").strip().splitlines()
        first = msg[0] if msg else "invalid syntax"
        raise SourceSyntaxError(f"syntax error at line {e.raw_line}, column {e.raw_column + 1}: {first}",
                                e.raw_line, e.raw_column + 1) from None
    except RecursionError:
        raise SourceError("expression nested too deeply to parse") from None
    except MemoryError:
        raise SourceError("out of memory while parsing") from None
    except Exception as e:  # the native parser raises plain exceptions for some inputs
        text = str(e).strip().splitlines()
        raise SourceError(f"cannot parse: {text[0][:200] if text else type(e).__name__}") from None
    finally:
        sys.setrecursionlimit(old)
