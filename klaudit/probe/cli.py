"""``klaudit probe FILE.py::FUNCTION``: measure a KL implementation's gradient coefficient by running it.

No torch at import time: the command imports it when it runs, and exits 2 with one line if it is
missing.  Exit codes: 0 principled, 1 not principled (or unmatched), 2 error.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys

import click

EXIT_PRINCIPLED, EXIT_NOT_PRINCIPLED, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> None:
    click.echo(f"klaudit: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _load(target: str):
    if "::" not in target:
        _fail(f"expected FILE.py::FUNCTION, got {target!r}")
    path, qualname = target.rsplit("::", 1)
    if not os.path.isfile(path):
        _fail(f"no such file: {path}")
    path = os.path.abspath(path)
    name = "klaudit_probe_target_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        _fail(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file: report, do not crash
        _fail(f"importing {path} failed: {type(e).__name__}: {e}")
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            _fail(f"{path} has no {qualname!r}")
    if not callable(obj):
        _fail(f"{qualname!r} in {path} is not callable")
    return obj


@click.command("probe", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", metavar="FILE.py::FUNCTION")
@click.option("--policy", default="logp", show_default=True, metavar="NAME",
              help="Parameter that receives the policy log-probs; logits:NAME or model:NAME for logits or a model.")
@click.option("--reference", default="ref_logp", show_default=True, metavar="NAME",
              help="Parameter that receives the reference log-probs (same spellings as --policy).")
@click.option("--old", default=None, metavar="NAME",
              help="Parameter that receives the rollout (old) log-probs, if any.")
@click.option("--actions", default=None, metavar="NAME",
              help="With logits:/model: sources, the parameter that receives the sampled token ids "
                   "(per-token probing); without it the vocabulary is probed (exact KL).")
@click.option("--actions-keepdim", is_flag=True, help="Token ids shaped (B, T, 1) rather than (B, T).")
@click.option("--kind", type=click.Choice(["auto", "loss", "reward"]), default="auto", show_default=True,
              help="Read the output as a loss or as per-token rewards (auto: scalar = loss).")
@click.option("--bind", "binds", multiple=True, metavar="NAME=VALUE",
              help="Bind a parameter: ones, zeros, none, true, false or a number (repeatable). Other "
                   "parameters are bound by name: masks -> ones, advantages/rewards/scores -> zeros, "
                   "other losses -> 0, coefficients -> 1, defaults kept.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also plot the measured coefficient over delta to this image (needs matplotlib).")
def probe(target, policy, reference, old, actions, actions_keepdim, kind, binds, as_json, plot_path):
    """Measure the gradient coefficient of a KL implementation by running it.

    WARNING: this IMPORTS AND RUNS the file FILE.py (its top-level code executes) and then calls
    FUNCTION with synthetic log-probs under autograd; only probe code you trust.

    It reports the coefficient family (k1/k2/k3/abs, as loss or in the reward), its scale, clamps,
    and whether the coefficient is principled (affine in -log(delta)). Exit codes: 0 principled,
    1 not principled, 2 error (including torch not installed).
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        _fail("`klaudit probe` needs torch: pip install 'klaudit[probe]'")
    from .autobind import autobind, describe, parse_value
    from .errors import ProbeError
    from .measure import measure
    from .sources import Logits, Model, parse

    fn = _load(target)
    try:
        sources = {}
        for role, spec in (("policy", policy), ("reference", reference), ("old", old)):
            if spec is None:
                continue
            src = parse(spec)
            if isinstance(src, (Logits, Model)) and actions:
                src = type(src)(src.name, actions, src.vocab, actions_keepdim)
            sources[role] = src
        overrides = {}
        for b in binds:
            if "=" not in b:
                raise ProbeError(f"--bind expects NAME=VALUE, got {b!r}")
            k, v = b.split("=", 1)
            overrides[k.strip()] = parse_value(v)
        taken = [s.name for s in sources.values()] + ([actions] if actions else [])
        bound = autobind(fn, exclude=taken, overrides=overrides)
        rep = measure(fn, sources["policy"], sources["reference"], old=sources.get("old"), kind=kind,
                      **{k: v for k, (v, _) in bound.items()})
    except ProbeError as e:
        _fail(str(e))
    except Exception as e:  # noqa: BLE001 - the user's function raised: report it
        _fail(f"calling {target} failed: {type(e).__name__}: {e}")
    if plot_path:
        try:
            rep.plot(plot_path)
        except ImportError as e:
            _fail(str(e))
    if as_json:
        click.echo(json.dumps({"version": 1, "target": target,
                               "bindings": {k: describe(v) for k, (v, _) in bound.items()},
                               "report": rep.to_dict()}, indent=2, default=str))
    else:
        click.echo(f"{target}")
        if bound:
            click.echo("  bound: " + ", ".join(f"{k}={describe(v)}" for k, (v, _) in bound.items()))
        click.echo("  " + str(rep))
        if plot_path:
            click.echo(f"  plot: {plot_path}")
    sys.exit(EXIT_PRINCIPLED if rep.principled else EXIT_NOT_PRINCIPLED)
