"""Command line: ``klaudit [check] PATH...``, ``klaudit inventory``, ``klaudit rule``.

Exit codes: 0 no findings, 1 findings, 2 a file could not be analysed, a bad configuration or a
usage error (the other files are still linted and reported).
"""
from __future__ import annotations

import io
import os
import sys
from typing import List, Optional

import click

from . import __version__

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
COMMANDS = ("check", "inventory", "rule", "explain", "probe", "clean")
OUTPUT_FORMATS = ("full", "text", "concise", "json", "sarif", "github")  # text: alias of full


class DefaultGroup(click.Group):
    """``klaudit train.py`` means ``klaudit check train.py``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["check"] + list(args)
        elif not args:
            args = ["check", "--help"]
        return super().parse_args(ctx, args)


def _split_codes(values) -> List[str]:
    out: List[str] = []
    for v in values or ():
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _load_config(paths, select, ignore, extend_select, preview, config_path):
    from .config import ConfigError, load

    try:
        cfg = load(paths or ["."], config_path)
    except ConfigError as e:
        click.echo(f"klaudit: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    if select:
        # an explicit selection on the command line replaces the configured selection and ignores
        cfg.select = _split_codes(select)
        cfg.ignore = []
    if extend_select:
        cfg.extend_select += _split_codes(extend_select)
    if ignore:
        cfg.ignore += _split_codes(ignore)
    if preview:
        cfg.preview = True
    try:
        cfg.selected()
    except ValueError as e:
        click.echo(f"klaudit: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    return cfg


def _open_out(path: Optional[str]):
    if path is None:
        return sys.stdout, False
    try:
        return open(path, "w", encoding="utf-8"), True
    except OSError as e:
        click.echo(f"klaudit: error: cannot write {path}: {e.strerror}", err=True)
        sys.exit(EXIT_ERROR)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="klaudit")
def main() -> None:
    """klaudit: audit the gradient of KL regularisation in RL training code.

    `klaudit PATH...` is the same as `klaudit check PATH...`.  The linter reads your code and never
    imports or runs it (only `klaudit probe` does).
    """


_RUN_OPTIONS: dict = {}


def _set_run_option(ctx, param, value):
    _RUN_OPTIONS[param.name] = value
    return value


def _engine_run(paths, cfg, no_prefilter):
    from . import engine

    return engine.run(paths, cfg, prefilter=not no_prefilter, jobs=_RUN_OPTIONS.get("jobs"),
                      use_cache=not _RUN_OPTIONS.get("no_cache", False))


def _common(f):
    opts = [
        click.option("--select", multiple=True, help="Rule codes, names or prefixes to enable (comma-separated)."),
        click.option("--extend-select", multiple=True, help="Codes to enable on top of the selection."),
        click.option("--ignore", multiple=True, help="Rule codes, names or prefixes to disable."),
        click.option("--preview", is_flag=True, help="Enable preview rules."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="pyproject.toml to use."),
        click.option("--no-prefilter", is_flag=True, hidden=True, help="Parse every file (for testing)."),
        click.option("-j", "--jobs", type=click.IntRange(min=1), expose_value=False, callback=_set_run_option,
                     help="Worker processes for the per-file stage (default: the number of cores)."),
        click.option("--no-cache", is_flag=True, expose_value=False, callback=_set_run_option,
                     help="Neither read nor write the .klaudit_cache/ directory."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--output-format", "--format", "fmt", default="full", envvar="KLAUDIT_OUTPUT_FORMAT",
              type=click.Choice(OUTPUT_FORMATS),
              help="full (default; `text` is an alias): findings with the rule's help; concise: one line per "
                   "finding; json; sarif (2.1.0, for GitHub code scanning); github (workflow annotations).")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False), help="Write the report to a file.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings.")
@click.option("--statistics", is_flag=True, help="Print a count per rule code instead of the findings.")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False),
              help="Report only findings that this baseline file does not record.")
@click.option("--write-baseline", "write_baseline_path", type=click.Path(dir_okay=False),
              help="Record every current finding in this baseline file, then exit.")
@click.option("--explain", "explain_terms", is_flag=True,
              help="After the findings, explain the math of each flagged KL term (as `klaudit explain` does).")
@click.option("--fix", "fix", is_flag=True,
              help="Apply the fixes of the findings (all are unsafe: they also need --unsafe-fixes).")
@click.option("--unsafe-fixes", is_flag=True,
              help="Allow fixes that change training dynamics (every klaudit fix does); with --fix, apply them.")
@click.option("--diff", "show_diff", is_flag=True,
              help="Print the fixes as a unified diff instead of the findings; change no file.")
@_common
def check(paths, fmt, output_file, exit_zero, statistics, baseline_path, write_baseline_path, select, extend_select,
          ignore, preview, config_path, no_prefilter, explain_terms=False, fix=False, unsafe_fixes=False,
          show_diff=False):
    """Lint PATHS (files or directories) for KL-regularisation pathologies."""

    paths = list(paths) or ["."]
    if statistics and fmt in ("sarif", "github"):
        click.echo(f"klaudit: error: --statistics cannot be combined with --output-format {fmt}", err=True)
        sys.exit(EXIT_ERROR)
    if explain_terms and fmt in ("sarif", "github"):
        click.echo(f"klaudit: error: --explain cannot be combined with --output-format {fmt}", err=True)
        sys.exit(EXIT_ERROR)
    cfg = _load_config(paths, select, ignore, extend_select, preview, config_path)
    cfg.fixes = fix or unsafe_fixes or show_diff
    if baseline_path and not write_baseline_path:
        _check_baseline(baseline_path)
    report = _engine_run(paths, cfg, no_prefilter)
    if write_baseline_path:
        _write_baseline(report, write_baseline_path)
        sys.exit(EXIT_ERROR if report.errors else EXIT_CLEAN)
    if baseline_path:
        _apply_baseline(report, baseline_path)
    if show_diff or (fix and unsafe_fixes):
        changed, fix_errors = _run_fixes(report, show_diff, output_file, exit_zero)
        if changed:  # lint again: what remains
            report = _engine_run(paths, cfg, no_prefilter)
            if baseline_path:
                _apply_baseline(report, baseline_path)
        report.errors.extend(fix_errors)
    out, close = _open_out(output_file)
    try:
        if explain_terms:
            _write_explained_findings(report, out, fmt, statistics)
        else:
            _write_findings(report, out, fmt, statistics)
    finally:
        if close:
            out.close()
    if fix and not unsafe_fixes:
        from .fix.driver import summary_available

        click.echo(summary_available(report), err=True)
    sys.exit(_exit_code(report, exit_zero))


def _run_fixes(report, show_diff: bool, output_file, exit_zero: bool = False):
    """``--diff``: print the fixes as a unified diff and exit (1 when there is one, as ruff does).
    ``--fix --unsafe-fixes``: write them; returns (whether a file changed, errors writing them)."""
    from .fix import driver
    from .model import FileError

    plan = driver.plan(report)
    if show_diff:
        out, close = _open_out(output_file)
        try:
            driver.diff(plan, out)
        finally:
            if close:
                out.close()
        click.echo(driver.summary_diff(plan), err=True)
        sys.exit(EXIT_ERROR if report.errors else (EXIT_FINDINGS if plan.changed and not exit_zero else EXIT_CLEAN))
    errors = [FileError(path, msg) for path, msg in driver.write(plan)]
    click.echo(driver.summary_applied(plan), err=True)
    return bool(plan.changed) and len(errors) < len(plan.changed), errors


def _write_explained_findings(report, out, fmt: str, statistics: bool) -> None:
    """The findings, then an explanation of each flagged term: text blocks after the text report, or an
    ``explanations`` list added to the JSON document."""
    import json

    from .explain import explain_all
    from .locate import terms_with_findings
    from .report import explain_text

    explanations = explain_all(terms_with_findings(report), report.notebooks)
    if fmt == "json":
        buf = io.StringIO()
        _write_findings(report, buf, fmt, statistics)
        doc = json.loads(buf.getvalue())
        doc["explanations"] = [e.to_dict() for e in explanations]
        json.dump(doc, out, indent=2)
        out.write("\n")
        return
    _write_findings(report, out, fmt, statistics)
    if explanations:
        out.write("\nExplanations\n============\n\n")
        explain_text.write(explanations, out)


def _write_findings(report, out, fmt: str, statistics: bool) -> None:
    """The report in ``fmt``; the JSON, SARIF and GitHub writers are imported only when used."""
    if fmt == "json" and statistics:
        import json

        from .report.text import statistics_rows

        rows = [{"code": c, "name": n, "count": k} for k, c, n in statistics_rows(report)]
        json.dump({"version": 1, "statistics": rows}, out, indent=2)
        out.write("\n")
    elif fmt == "json":
        from .report import json_report

        json_report.findings(report, out)
    elif fmt == "sarif":
        from .report import sarif

        sarif.write(report, out)
    elif fmt == "github":
        from .report import github

        github.write(report, out)
    else:
        from .report import text

        text.findings(report, out, statistics=statistics, color=_use_color(out), concise=fmt == "concise")


def _use_color(out) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR")


def _check_baseline(path: str) -> None:
    from .baseline import BaselineError, load

    try:
        load(path)
    except BaselineError as e:
        click.echo(str(e), err=True)
        sys.exit(EXIT_ERROR)


def _apply_baseline(report, path: str) -> None:
    from .baseline import BaselineError, apply

    try:
        apply(report, path)
    except BaselineError as e:
        click.echo(str(e), err=True)
        sys.exit(EXIT_ERROR)


def _write_baseline(report, path: str) -> None:
    from .baseline import BaselineError, write
    from .report.text import errors

    try:
        n = write(report, path)
    except BaselineError as e:
        click.echo(str(e), err=True)
        sys.exit(EXIT_ERROR)
    errors(report, sys.stdout)
    click.echo(f"klaudit: recorded {n} finding{'s' if n != 1 else ''} in {path}", err=True)


def _exit_code(report, exit_zero: bool) -> int:
    if report.errors:
        return EXIT_ERROR
    if report.findings and not exit_zero:
        return EXIT_FINDINGS
    return EXIT_CLEAN


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--output-format", "--format", "fmt", default="text", type=click.Choice(["text", "json"]))
@click.option("-o", "--output-file", type=click.Path(dir_okay=False))
@_common
def inventory(paths, fmt, output_file, select, extend_select, ignore, preview, config_path, no_prefilter):
    """List every KL term found, flagged or not: the project's KL report card."""
    from .report import inventory_text, json_report

    paths = list(paths) or ["."]
    cfg = _load_config(paths, select, ignore, extend_select, preview, config_path)
    report = _engine_run(paths, cfg, no_prefilter)
    out, close = _open_out(output_file)
    try:
        if fmt == "json":
            json_report.inventory(report, out)
        else:
            inventory_text.write(report, out)
    finally:
        if close:
            out.close()
    sys.exit(EXIT_ERROR if report.errors else EXIT_CLEAN)


@main.command()
@click.argument("path", required=False, default=".", type=click.Path(file_okay=False))
def clean(path):
    """Remove the .klaudit_cache/ directory (of PATH's configuration root, default the current one)."""
    from .cache import clean as clean_cache
    from .config import ConfigError, load

    try:
        root = load([path]).root
    except ConfigError:
        root = os.path.abspath(path)
    removed = clean_cache(root)
    click.echo(f"klaudit: {'removed' if removed else 'no'} cache in {os.path.join(root, '.klaudit_cache')}")


@main.command()
@click.argument("code", required=False)
@click.option("--all", "show_all", is_flag=True, help="List every rule.")
def rule(code, show_all):
    """Print the documentation of rule CODE (a code like KL102 or a name like k3-as-loss)."""
    from . import ruledocs
    from .rules.registry import RULES, lookup

    if show_all or not code:
        for r in RULES:
            state = "preview" if r.preview else "on"
            click.echo(f"{r.code}  {r.name:<48} {r.severity:<8} {state:<8} {r.summary}")
        return
    r = lookup(code)
    if r is None:
        click.echo(f"klaudit: error: unknown rule {code!r} (try `klaudit rule --all`)", err=True)
        sys.exit(EXIT_ERROR)
    doc = ruledocs.read(r.code)
    if doc is None:
        click.echo(f"klaudit: error: no documentation found for {r.code}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(doc.rstrip())


@main.command()
@click.argument("targets", nargs=-1, required=True, metavar="PATH:LINE...")
@click.option("--output-format", "--format", "fmt", default="text", type=click.Choice(["text", "full", "json"]),
              help="text (default; `full` is an alias) or json.")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False), help="Write the explanation to a file.")
@click.option("--context", "context_paths", multiple=True, type=click.Path(),
              help="Also analyse these files or directories (helpers, callers, config defaults); default: the "
                   "target's file alone.")
@_common
def explain(targets, fmt, output_file, context_paths, select, extend_select, ignore, preview, config_path,
            no_prefilter):
    """Explain the math of the KL term at PATH:LINE (the estimator's line, the line that uses its value, or
    an option variant's line; `PATH:cell N:LINE` in a notebook): its expression, derivative, coefficient
    c(delta) next to -log(delta), their Taylor agreement at delta = 1, their limits, what it minimises,
    clamps, options and the rules that fired."""
    from .explain import explain_all
    from .locate import TargetError, find, parse_target
    from .report import explain_text

    files = []
    for t in targets:
        try:
            path = parse_target(t)[0]
        except ValueError as e:
            click.echo(f"klaudit: error: {e}", err=True)
            sys.exit(EXIT_ERROR)
        if not os.path.isfile(path):
            click.echo(f"klaudit: error: {path}: no such file", err=True)
            sys.exit(EXIT_ERROR)
        files.append(path)
    paths = list(dict.fromkeys(files + list(context_paths)))
    cfg = _load_config(paths, select, ignore, extend_select, preview, config_path)
    report = _engine_run(paths, cfg, no_prefilter)
    terms = []
    for t in targets:
        try:
            terms.extend(x for x in find(report, t) if x not in terms)
        except TargetError as e:
            click.echo(f"klaudit: error: {e}", err=True)
            sys.exit(EXIT_ERROR)
    explanations = explain_all(terms, report.notebooks)
    out, close = _open_out(output_file)
    try:
        if fmt == "json":
            explain_text.write_json(explanations, out)
        else:
            explain_text.write(explanations, out)
    finally:
        if close:
            out.close()
    sys.exit(EXIT_CLEAN)


if __name__ == "__main__":  # pragma: no cover
    main()
from .probe.cli import probe as _probe_command  # noqa: E402
main.add_command(_probe_command)
