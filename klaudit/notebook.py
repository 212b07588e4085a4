"""Jupyter notebooks as Python source: the code cells joined into one virtual module, with a map from
each virtual line back to (cell, line in the cell) and to the line of the ``.ipynb`` file where that
source line is stored.

Cells are numbered from 1 over *all* cells of the notebook, Markdown ones included (ruff's
convention), so "cell 3" is the third cell from the top.  IPython syntax that is not Python (``%pip``,
``!ls``, ``files = !ls``, ``obj?``, ``%%time``) is blanked out so the rest of the cell parses; cells
run by another interpreter (``%%bash``, ``%%html``, ``%%writefile`` ...) are left out whole.  A cell
that still does not parse is left out and reported by number; the other cells are still linted.

The notebook JSON is read here directly (nbformat 4, and the ``worksheets`` layout of nbformat 3);
nbformat itself is not a dependency.
"""
from __future__ import annotations

import ast
import json
import re
from bisect import bisect_right
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .source import SourceError

SUFFIX = ".ipynb"

# cell magics whose body is still Python: only the ``%%name`` line is blanked
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "pypy", "python", "python3"})

_AST_FLAGS = ast.PyCF_ONLY_AST | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
_LINE_MAGIC = re.compile(r"[ \t]*(?:[%!?]|[A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*[ \t]*=[ \t]*[%!])")
_HELP = re.compile(r"[ \t]*[A-Za-z_][\w.]*\?{1,2}[ \t]*$")


def is_notebook(path: str) -> bool:
    return path.endswith(SUFFIX)


@dataclass(frozen=True)
class CellMap:
    """Where each line of the virtual module comes from.  Index ``v - 1`` describes virtual line ``v``:
    ``cells`` the 1-based cell number (0 for the blank separator lines between cells), ``lines`` the
    1-based line in that cell, ``json_lines`` the line of the ``.ipynb`` file holding it (0: unknown)."""

    cells: Tuple[int, ...]
    lines: Tuple[int, ...]
    json_lines: Tuple[int, ...]

    def locate(self, line: int) -> Optional[Tuple[int, int]]:
        """(cell, line in cell) of virtual line ``line``; None for a separator or out of range."""
        if 0 < line <= len(self.cells) and self.cells[line - 1]:
            return self.cells[line - 1], self.lines[line - 1]
        return None

    def virtual(self, cell: int, line: int) -> Optional[int]:
        """The virtual line of ``line`` in ``cell``."""
        for i, (c, ln) in enumerate(zip(self.cells, self.lines)):
            if c == cell and ln == line:
                return i + 1
        return None

    def json_line(self, cell: int, line: int) -> int:
        v = self.virtual(cell, line)
        return self.json_lines[v - 1] if v else 0


@dataclass(frozen=True)
class Notebook:
    text: str  # the virtual module (cells that are not Python already blanked)
    cells: CellMap
    errors: Tuple[str, ...] = ()  # "cell 3: ..." for each cell left out
    language: str = "python"


@dataclass(frozen=True)
class _Cell:
    number: int  # 1-based over all cells
    text: str
    element_lines: Tuple[Tuple[int, int], ...]  # (char offset in text, json line) of each source element


# ------------------------------------------------------------------------------------------------ JSON


def load(path: str, data: bytes) -> Notebook:
    """Turn the bytes of an ``.ipynb`` file into a virtual module.  Raises SourceError with one line."""
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SourceError(f"notebook is not valid UTF-8 (at line {line})") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SourceError(f"notebook is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise SourceError("notebook JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise SourceError("not a Jupyter notebook: the JSON is not an object (nbformat 4 expected)")
    language = _language(doc)
    cells = _cells(doc, raw)
    return build(cells, language)


def _language(doc: dict) -> str:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return "python"
    for key, field in (("language_info", "name"), ("kernelspec", "language")):
        v = meta.get(key)
        if isinstance(v, dict) and isinstance(v.get(field), str) and v[field].strip():
            return v[field].strip().lower()
    return "python"


def _source_text(src, where: str) -> Tuple[str, List[str]]:
    if isinstance(src, str):
        return src, [src]
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src), list(src)
    raise SourceError(f"{where}: \"source\" is neither a string nor a list of strings")


def _cells(doc: dict, raw: str) -> List[_Cell]:
    if isinstance(doc.get("cells"), list):
        cells, key = doc["cells"], "source"
    elif isinstance(doc.get("worksheets"), list):  # nbformat 3
        cells, key = [], "input"
        for ws in doc["worksheets"]:
            if isinstance(ws, dict) and isinstance(ws.get("cells"), list):
                cells.extend(ws["cells"])
    else:
        raise SourceError("not a Jupyter notebook: no \"cells\" list (nbformat 4 expected)")
    positions = _source_positions(raw) if key == "source" else {}
    out: List[_Cell] = []
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise SourceError(f"cell {i + 1}: not a JSON object")
        if cell.get("cell_type") != "code":
            continue
        text, elements = _source_text(cell.get(key, ""), f"cell {i + 1}")
        lines = positions.get(i)
        offsets: List[Tuple[int, int]] = []
        if lines is not None and len(lines) == len(elements):
            at = 0
            for el, jl in zip(elements, lines):
                offsets.append((at, jl))
                at += len(el)
        out.append(_Cell(i + 1, text, tuple(offsets)))
    return out


_WS = re.compile(r"[ \t\n\r]*")


def _source_positions(raw: str) -> Dict[int, List[int]]:
    """cell index -> the 1-based line of the ``.ipynb`` file where each element of its ``source``
    starts.  Best effort: an empty result only costs the exact JSON lines in SARIF/GitHub output."""
    newlines = [m.start() for m in re.finditer("\n", raw)]
    line_of = lambda i: bisect_right(newlines, i - 1) + 1  # noqa: E731
    dec = json.JSONDecoder()
    out: Dict[int, List[int]] = {}

    def ws(i: int) -> int:
        return _WS.match(raw, i).end()

    def skip(i: int) -> int:
        return dec.raw_decode(raw, i)[1]

    try:
        i = ws(0)
        if raw[i] != "{":
            return {}
        i = ws(i + 1)
        while raw[i] != "}":
            key, i = json.decoder.scanstring(raw, i + 1)
            i = ws(ws(i) + 1)  # past ':'
            if key == "cells" and raw[i] == "[":
                i = _cells_array(raw, ws(i + 1), ws, skip, line_of, out)
            else:
                i = skip(i)
            i = ws(i)
            if raw[i] == ",":
                i = ws(i + 1)
    except (ValueError, IndexError, RecursionError):
        return {}
    return out


def _cells_array(raw, i, ws, skip, line_of, out) -> int:
    n = 0
    while raw[i] != "]":
        if raw[i] == "{":
            i = ws(i + 1)
            while raw[i] != "}":
                key, i = json.decoder.scanstring(raw, i + 1)
                i = ws(ws(i) + 1)
                if key == "source":
                    lines = []
                    if raw[i] == "[":
                        i = ws(i + 1)
                        while raw[i] != "]":
                            lines.append(line_of(i))
                            i = ws(skip(i))
                            if raw[i] == ",":
                                i = ws(i + 1)
                        i += 1
                    else:
                        lines.append(line_of(i))
                        i = skip(i)
                    out[n] = lines
                else:
                    i = skip(i)
                i = ws(i)
                if raw[i] == ",":
                    i = ws(i + 1)
            i += 1
        else:
            i = skip(i)
        n += 1
        i = ws(i)
        if raw[i] == ",":
            i = ws(i + 1)
    return i + 1


# ---------------------------------------------------------------------------------------- IPython syntax


def _logical_starts(lines: Sequence[str]) -> List[bool]:
    """For each line: does it begin a new logical line (not inside brackets, a string, or after a
    backslash continuation)?  A small scanner, enough to tell ``% y`` continuing an expression from a
    ``%magic`` line."""
    out = []
    depth = 0
    quote = ""  # the open string's delimiter: ', ", ''' or """
    cont = False
    for ln in lines:
        out.append(depth == 0 and not quote and not cont)
        cont = False
        i, n = 0, len(ln)
        while i < n:
            c = ln[i]
            if quote:
                if c == "\\":
                    i += 2
                    continue
                if ln.startswith(quote, i):
                    i += len(quote)
                    quote = ""
                    continue
                i += 1
                continue
            if c == "#":
                break
            if c in "\"'":
                q3 = c * 3
                quote = q3 if ln.startswith(q3, i) else c
                i += len(quote)
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth = max(0, depth - 1)
            i += 1
        if quote in ("'", '"'):
            if ln.endswith("\\"):
                pass  # a single-quoted string continued by backslash
            else:
                quote = ""  # unterminated: a syntax error the parser will report
        elif not quote and ln.endswith("\\"):
            cont = True
    return out


def python_lines(text: str) -> Optional[List[str]]:
    """The cell's lines with IPython-only syntax blanked; None when the whole cell is for another
    interpreter (``%%bash`` ...)."""
    lines = text.split("\n")
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        name = lines[first].lstrip()[2:].split(None, 1)[0] if lines[first].lstrip()[2:].strip() else ""
        if name not in PYTHON_CELL_MAGICS:
            return None
        lines[first] = ""
    starts = _logical_starts(lines)
    blanking = False
    for i, ln in enumerate(lines):
        if blanking:  # a magic continued by a backslash
            blanking = ln.rstrip().endswith("\\")
            lines[i] = ""
        elif starts[i] and (_LINE_MAGIC.match(ln) or _HELP.match(ln)):
            indent = ln[: len(ln) - len(ln.lstrip(" \t"))]
            blanking = ln.rstrip().endswith("\\")
            lines[i] = f"{indent}pass"  # keeps an indented block that held only the magic valid
    return lines


# --------------------------------------------------------------------------------------------- building


def build(cells: Iterable[_Cell], language: str = "python") -> Notebook:
    """Join the cells (each followed by one blank separator line) and check each one parses."""
    text_lines: List[str] = []
    m_cells: List[int] = []
    m_lines: List[int] = []
    m_json: List[int] = []
    errors: List[str] = []
    for cell in cells:
        body = cell.text.replace("\r\n", "\n").replace("\r", "\n")
        lines = python_lines(body)
        if lines is None:
            lines = [""] * len(body.split("\n"))
        else:
            try:
                compile("\n".join(lines), "<cell>", "exec", _AST_FLAGS, dont_inherit=True)
            except SyntaxError as e:
                errors.append(f"cell {cell.number}: syntax error at line {e.lineno or 1}, column "
                              f"{e.offset or 1}: {e.msg}")
                lines = [""] * len(lines)
            except (ValueError, RecursionError, MemoryError) as e:
                errors.append(f"cell {cell.number}: cannot parse: {type(e).__name__}")
                lines = [""] * len(lines)
        starts = [off for off, _ in cell.element_lines]
        at = 0
        for j, (ln, original) in enumerate(zip(lines, body.split("\n")), 1):
            text_lines.append(ln)
            m_cells.append(cell.number)
            m_lines.append(j)
            m_json.append(cell.element_lines[max(bisect_right(starts, at) - 1, 0)][1] if starts else 0)
            at += len(original) + 1
        text_lines.append("")  # separator: an own-line suppression at a cell's end covers nothing below
        m_cells.append(0)
        m_lines.append(0)
        m_json.append(0)
    return Notebook("\n".join(text_lines) + "\n", CellMap(tuple(m_cells), tuple(m_lines), tuple(m_json)),
                    tuple(errors), language)


def blank_cell(nb: Notebook, cell: int, reason: str) -> Notebook:
    """The same notebook with ``cell`` left out and ``reason`` recorded."""
    lines = nb.text.split("\n")
    for i, c in enumerate(nb.cells.cells):
        if c == cell:
            lines[i] = ""
    return replace(nb, text="\n".join(lines), errors=nb.errors + (f"cell {cell}: {reason}",))


# ------------------------------------------------------------------------------------- mapping results


_AT_LINE = re.compile(r"\bat line (\d+)\b")


def remap_findings(findings, maps: Dict[str, CellMap]):
    """Findings in notebooks moved from virtual lines to (cell, line in cell); line numbers quoted in
    their messages too."""
    if not maps:
        return findings
    out = []
    for f in findings:
        cm = maps.get(f.path)
        if cm is None:
            out.append(f)
            continue
        where = cm.locate(f.line)
        if where is None:
            out.append(f)
            continue
        cell, line = where
        end = cm.locate(f.end_line)
        end_line = end[1] if end is not None and end[0] == cell else line
        out.append(replace(f, line=line, end_line=end_line, cell=cell, message=_remap_message(f.message, f.path, cm),
                           term_line=(cm.locate(f.term_line) or (0, f.term_line))[1]))
    out.sort(key=lambda f: (f.path, f.cell or 0, f.line, f.column, f.code, f.message))
    return out


def _remap_message(msg: str, path: str, cm: CellMap) -> str:
    def at_line(m):
        w = cm.locate(int(m.group(1)))
        return f"at cell {w[0]}, line {w[1]}" if w else m.group(0)

    def path_line(m):
        w = cm.locate(int(m.group(1)))
        return f"{path}:cell {w[0]}:{w[1]}" if w else m.group(0)

    msg = _AT_LINE.sub(at_line, msg)
    return re.sub(re.escape(path) + r":(\d+)\b", path_line, msg)


def locate(maps: Dict[str, CellMap], path: str, line: int) -> Tuple[Optional[int], int]:
    """(cell or None, line) for a virtual location of any file."""
    cm = maps.get(path) if maps else None
    if cm is not None:
        w = cm.locate(line)
        if w is not None:
            return w
    return None, line
