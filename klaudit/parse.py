"""libcst parsing with every failure turned into a one-line reason.

libcst's native parser recurses on the C stack: source nested a few thousand levels deep (brackets,
chained operators, adjacent string literals, elif branches) overflows the stack and kills the
process (SIGSEGV, which no ``except`` can catch), after taking time quadratic in the depth.  Two
guards: ``check_nesting`` measures the nesting on the token stream first and refuses source beyond
limits in line with CPython's own (its tokenizer refuses more than 200 nested brackets), and the
parse runs in a thread with a large stack, so that what passes the check parses with a wide margin
whatever the process's stack limit.
"""
from __future__ import annotations

import io
import sys
import threading
import tokenize

from .source import SourceError

MAX_BRACKETS = 200  # nested (), [], {}: CPython's tokenizer refuses more ("too many nested parentheses")
MAX_CHAIN = 1000  # operators and keywords chained in one expression; elif branches of one if
MAX_STRINGS = 10000  # adjacent string literals (one concatenated string; pydoc's topics.py has ~2300)
PARSE_STACK_BYTES = 128 * 1024 * 1024  # the parser thread's stack (address space; used only as deep as needed)

_SEPARATORS = frozenset({",", ";", "=", "->", ":=", "+=", "-=", "*=", "/=", "//=", "%=", "@=", "&=", "|=", "^=",
                         ">>=", "<<=", "**="})
_CHAIN_KEYWORDS = frozenset({"lambda", "not", "if", "else", "await", "and", "or"})
_OPEN, _CLOSE = "([{", ")]}"
_SKIP = frozenset({tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT})
_FSTRING_START = getattr(tokenize, "FSTRING_START", -1)  # Python 3.12+ tokenizes f-strings into parts
_FSTRING_END = getattr(tokenize, "FSTRING_END", -1)


class SourceSyntaxError(SourceError):
    """A syntax error at a known place (1-based line and column)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def check_nesting(text: str) -> None:
    """Raise SourceError when ``text`` nests deeper than libcst parses safely and in reasonable time.

    The measure is an upper bound of the parser's depth, per bracket level: the operators, keywords
    and bracketed trailers of one comma-separated element plus its deepest bracketed part; separately
    the bracket depth, runs of adjacent string literals and runs of elif branches.  Source that does
    not tokenize is measured up to the error (the parser then reports it)."""
    if len(text) < 2 * MAX_BRACKETS:
        return
    cur = [0]  # chained items of the current element, per bracket level
    inner = [0]  # the deepest bracketed part of the current element, per level
    best = [0]  # the deepest element closed so far, per level
    elifs: dict = {}  # indentation column -> elif branches in a row
    strings = 0  # adjacent string literals in a row
    fstrings = 0  # open f-strings (3.12+ tokens)
    line_start = True

    def too_deep(what: str, line: int):
        raise SourceError(f"expression nested too deeply to parse ({what} at line {line})")

    def chain(line: int) -> None:
        if cur[-1] + inner[-1] > MAX_CHAIN:
            too_deep(f"more than {MAX_CHAIN} chained operations", line)

    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            typ, s = tok.type, tok.string
            if typ in _SKIP:
                continue
            if typ == tokenize.STRING or (typ == _FSTRING_START and fstrings == 0):
                strings += 1
                if strings > MAX_STRINGS:
                    too_deep(f"more than {MAX_STRINGS} adjacent string literals", tok.start[0])
            elif fstrings == 0 and typ != _FSTRING_END:
                strings = 0
            if typ == _FSTRING_START:
                fstrings += 1
            elif typ == _FSTRING_END:
                fstrings = max(0, fstrings - 1)
            if typ == tokenize.NEWLINE or typ == tokenize.ENDMARKER:
                cur, inner, best = [0], [0], [0]
                line_start = True
                continue
            if line_start:
                line_start = False
                col = tok.start[1]
                if typ == tokenize.NAME and s == "elif":
                    elifs[col] = elifs.get(col, 0) + 1
                    if elifs[col] > MAX_CHAIN:
                        too_deep(f"more than {MAX_CHAIN} elif branches", tok.start[0])
                else:
                    elifs[col] = 0
            if typ != tokenize.OP:
                if typ == tokenize.NAME and s in _CHAIN_KEYWORDS:
                    cur[-1] += 1
                    chain(tok.start[0])
                continue
            if s in _OPEN:
                if not (s == "{" and fstrings):  # a replacement field is part of its f-string
                    cur[-1] += 1
                    chain(tok.start[0])
                cur.append(0)
                inner.append(0)
                best.append(0)
                if len(cur) - 1 > MAX_BRACKETS:
                    too_deep(f"more than {MAX_BRACKETS} nested brackets", tok.start[0])
            elif s in _CLOSE:
                if len(cur) > 1:
                    depth = max(best.pop(), cur.pop() + inner.pop()) + 1
                    inner[-1] = max(inner[-1], depth)
                    chain(tok.start[0])
            elif s in _SEPARATORS:
                best[-1] = max(best[-1], cur[-1] + inner[-1])
                cur[-1] = inner[-1] = 0
                if s == ";" and len(cur) == 1:
                    line_start = True
            else:
                cur[-1] += 1
                chain(tok.start[0])
    except (tokenize.TokenError, SyntaxError):
        return


def _native_parse(text: str):
    """``libcst.parse_module(text)`` in a thread with a large stack (here when no thread can start)."""
    import libcst

    box: dict = {}

    def target() -> None:
        try:
            box["tree"] = libcst.parse_module(text)
        except BaseException as e:  # handed to the calling thread
            box["error"] = e

    try:
        old = threading.stack_size()
        try:
            threading.stack_size(PARSE_STACK_BYTES)
            t = threading.Thread(target=target, name="klaudit-parse", daemon=True)
            t.start()
        finally:
            threading.stack_size(old)
    except (ValueError, RuntimeError, MemoryError, OSError):  # no such stack or thread here
        return libcst.parse_module(text)
    t.join()
    if "error" in box:
        raise box["error"]
    return box["tree"]


def parse_module(text: str):
    """Parse ``text`` into a ``libcst.Module``; raise SourceError with a readable reason."""
    import libcst

    check_nesting(text)
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old, 20000))
        return _native_parse(text)
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
