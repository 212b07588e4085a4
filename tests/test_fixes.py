"""Fixes (``--diff``, ``--fix --unsafe-fixes``): each kind rewrites its fixture with the real CLI, and the
result is checked four ways: it parses, it keeps the user's names and touches one line, it re-lints clean
for the rule, and the torch probe measures the function not principled before and principled after.

The fixtures are under ``fixtures/packages/fixes/`` (one file per fix kind, not read by
test_fixtures.py).  For KL105 "principled" is the off-policy sense: the probe, run with the rollout
log-probs shifted, must see the coefficient follow the importance weight pi/pi_old.
"""
from __future__ import annotations

import difflib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import libcst as cst
import pytest

from conftest import FIXTURES

FIXES = os.path.join(FIXTURES, "packages", "fixes")


def klaudit(*args, cwd=None):
    """The real CLI, without the cache (every run analyses and builds its fixes afresh)."""
    assert args[0] == "check"
    p = subprocess.run([sys.executable, "-m", "klaudit", "check", "--no-cache", *args[1:]], capture_output=True,
                       text=True, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------------------------------- the cases
def _principled(family):
    return lambda r: r.principled and r.family == family


def _not(family):
    return lambda r: not r.principled and r.family == family


def _off_policy_principled(r):
    return r.principled and r.tracks == "current, importance-weighted"


@dataclass
class Case:
    file: str
    function: str
    code: str
    new: str  # the fixed lines, stripped
    names: Tuple[str, ...]  # the user's names the fixed line must keep
    probe: Dict = field(default_factory=dict)  # measure() arguments, sources as strings or callables
    before: Callable = None
    after: Callable = None
    same_scale: bool = False  # the fix keeps the penalty's strength: equal first-order slopes

    @property
    def id(self):
        return f"{self.code}-{self.function}"


def _ones():
    from klaudit.probe import ones

    return ones


def _zeros():
    from klaudit.probe import zeros

    return zeros


def _logits(name):
    from klaudit.probe import logits

    return lambda: logits(name, actions="actions")


def _model(name):
    from klaudit.probe import model

    return lambda: model(name, actions="actions")


CASES = [
    Case("k3_as_loss.py", "grpo_loss", "KL102",
         "per_token_kl = 0.5 * (per_token_logps - ref_per_token_logps) ** 2",
         ("per_token_logps", "ref_per_token_logps"),
         dict(policy="per_token_logps", reference="ref_per_token_logps", per_token_loss=_zeros, mask=_ones, beta=0.04),
         _not("k3_loss"), _principled("k2_loss")),
    Case("k3_as_loss.py", "grpo_loss_logged", "KL102",
         "kl = (\n0.5 * (logp - ref_logp) ** 2\n- (0.5 * (logp - ref_logp) ** 2).detach()\n"
         "+ (log_ratio.exp() - log_ratio - 1).detach()\n)", ("logp", "ref_logp", "log_ratio"),
         dict(policy="logp", reference="ref_logp", pg_loss=0.0, mask=_ones, metrics=dict, beta=0.04),
         _not("k3_loss"), _principled("k2_loss")),
    Case("k3_as_loss.py", "grpo_loss_scaled", "KL102",
         "kl = (logp - ref_logp) ** 2", ("logp", "ref_logp"),
         dict(policy="logp", reference="ref_logp", pg_loss=0.0, mask=_ones, beta=0.04),
         _not("k3_loss"), _principled("k2_loss"), same_scale=True),
    Case("abs_as_loss.py", "abs_kl_loss", "KL104",
         "kl = 0.5 * (logp - ref_logp) ** 2", ("logp", "ref_logp"),
         dict(policy="logp", reference="ref_logp", pg_loss=0.0, beta=1.0),
         _not("abs_loss"), _principled("k2_loss")),
    Case("k1_as_loss.py", "kl_loss", "KL101",
         "kl = 0.5 * (policy_logprobs - ref_logprobs) ** 2", ("policy_logprobs", "ref_logprobs"),
         dict(policy="policy_logprobs", reference="ref_logprobs", pg_loss=0.0, kl_coef=0.1),
         _not("k1_loss"), _principled("k2_loss")),
    Case("k1_as_loss.py", "kl_loss_inline", "KL101",
         "loss = (beta * (0.5 * (logp - ref_logp) ** 2) * mask).sum() / mask.sum()", ("logp", "ref_logp", "mask"),
         dict(policy="logp", reference="ref_logp", mask=_ones, beta=0.1),
         _not("k1_loss"), _principled("k2_loss")),
    Case("k1_as_loss.py", "kl_loss_log_ratio", "KL101",
         "log_ratio = 0.5 * (logp - ref_logp) ** 2", ("logp", "ref_logp"),
         dict(policy=_logits("logits"), reference=_logits("ref_logits"), pg_loss=0.0, beta=1.0),
         _not("k1_loss"), _principled("k2_loss")),
    Case("non_k1_in_reward.py", "reward_with_k2", "KL103",
         "kl = logprobs - ref_logprobs", ("logprobs", "ref_logprobs"),
         dict(policy="logprobs", reference="ref_logprobs", scores=_zeros, beta=1.0),
         _not("k2_reward"), _principled("k1_reward")),
    Case("non_k1_in_reward.py", "reward_with_k3", "KL103",
         "kl = (logprobs - ref_logprobs).detach()", ("logprobs", "ref_logprobs"),
         dict(policy="logprobs", reference="ref_logprobs", scores=_zeros, beta=1.0),
         _not("k3_reward"), _principled("k1_reward")),
    Case("sign_error.py", "reward_plus_kl", "KL201",
         "rewards = scores - beta * kl", ("scores", "beta", "kl"),
         dict(policy="logprobs", reference="ref_logprobs", scores=_zeros, beta=1.0),
         _not("k1_reward"), _principled("k1_reward")),
    Case("sign_error.py", "loss_minus_kl", "KL201",
         "loss = pg_loss + beta * kl.mean()", ("pg_loss", "beta", "kl"),
         dict(policy="logp", reference="ref_logp", pg_loss=0.0, beta=1.0),
         _not("k2_loss"), _principled("k2_loss")),
    Case("sign_error.py", "reward_ref_minus_logp", "KL201",
         "kl = (logprobs - ref_logprobs).detach()", ("logprobs", "ref_logprobs"),
         dict(policy="logprobs", reference="ref_logprobs", scores=_zeros, beta=1.0),
         _not("k1_reward"), _principled("k1_reward")),
    Case("sign_error.py", "reward_augmented", "KL201",
         "rewards -= beta * kl", ("rewards", "beta", "kl"),
         dict(policy="logprobs", reference="ref_logprobs", scores=_zeros, beta=1.0),
         _not("k1_reward"), _principled("k1_reward")),
    Case("reward_not_detached.py", "shaped_rewards", "KL301",
         "kl = (logprobs - ref_logprobs).detach()", ("logprobs", "ref_logprobs"),
         dict(policy=_model("model"), reference=_model("ref_model"), input_ids=None, scores=_zeros, beta=1.0),
         lambda r: r.reward_detached is False, lambda r: r.reward_detached is True and r.principled),
    Case("off_policy_loss.py", "ppo_loss_k2", "KL105",
         "kl = ratio.detach() * (0.5 * (logp - ref_logp) ** 2)", ("ratio", "logp", "ref_logp"),
         dict(policy="logp", reference="ref_logp", old="old_logp", advantages=_zeros, mask=_ones, beta=1.0),
         lambda r: r.family == "k2_loss" and r.tracks == "current", _off_policy_principled),
    Case("off_policy_loss.py", "ppo_loss_k3", "KL105",
         "kl = ratio.detach() * (0.5 * (logp - ref_logp) ** 2)", ("ratio", "logp", "ref_logp"),
         dict(policy="logp", reference="ref_logp", old="old_logp", advantages=_zeros, mask=_ones, beta=1.0),
         lambda r: r.family == "k3_loss" and not r.principled and r.tracks == "current", _off_policy_principled),
]
FILES = sorted({c.file for c in CASES})


# ---------------------------------------------------------------------- one CLI run of each kind
@dataclass
class Run:
    dir: str
    original: Dict[str, str]
    fixed: Dict[str, str]
    diff: Tuple[int, str, str]
    fix_only: Tuple[int, str, str]
    fix_only_text: Dict[str, str]
    fix_json: list  # JSON findings with --fix (nothing applied)
    applied: Tuple[int, str, str]
    before: list  # JSON findings of the original
    after: list  # JSON findings once fixed

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def of(self, findings: list, name: str) -> list:
        return [f for f in findings if os.path.basename(f["path"]) == name]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The fixtures copied to a folder, then: lint, --diff, --fix, --fix --unsafe-fixes, lint again."""
    d = str(tmp_path_factory.mktemp("fixes"))
    for name in FILES:
        shutil.copy(os.path.join(FIXES, name), d)

    def texts():
        return {n: open(os.path.join(d, n), encoding="utf-8").read() for n in FILES}

    original = texts()
    before = json.loads(klaudit("check", d, "--output-format", "json")[1])["findings"]
    diff = klaudit("check", "--diff", d)
    assert texts() == original, "--diff changed a file"
    fix_only = klaudit("check", "--fix", d)
    fix_only_text = texts()
    fix_json = json.loads(klaudit("check", "--fix", "--output-format", "json", d)[1])["findings"]
    applied = klaudit("check", "--fix", "--unsafe-fixes", d)
    fixed = texts()
    after = json.loads(klaudit("check", d, "--output-format", "json")[1])["findings"]
    return Run(d, original, fixed, diff, fix_only, fix_only_text, fix_json, applied, before, after)


def _function_lines(text: str, function: str) -> Tuple[int, int]:
    mod = cst.metadata.MetadataWrapper(cst.parse_module(text))
    pos = mod.resolve(cst.metadata.PositionProvider)
    for node, rng in pos.items():
        if isinstance(node, cst.FunctionDef) and node.name.value == function:
            return rng.start.line, rng.end.line
    raise AssertionError(f"no function {function}")


def _names(text: str, lines: Tuple[int, int]):
    body = "\n".join(text.split("\n")[lines[0] - 1:lines[1]])
    out = set()

    class V(cst.CSTVisitor):
        def visit_Name(self, node):
            out.add(node.value)

    cst.parse_module(textwrap.dedent(body)).visit(V())
    return out


def _in(findings, code, lines):
    return [f for f in findings if f["code"] == code and lines[0] <= f["line"] <= lines[1]]


# --------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fix_rewrites_the_finding(case, run):
    original, fixed = run.original[case.file], run.fixed[case.file]
    lines = _function_lines(original, case.function)
    # the rule fires before, and its finding carries an unsafe fix
    assert _in(run.of(run.before, case.file), case.code, lines), f"{case.code} does not fire on {case.function}"
    assert all("fix" not in f for f in run.before)  # a plain lint builds no fix
    hits = _in(run.of(run.fix_json, case.file), case.code, lines)
    assert hits and all(h["fix"]["applicability"] == "unsafe" and h["fix"]["description"] for h in hits), hits
    # --diff shows the rewrite
    rc, out, err = run.diff
    assert rc == 1, err
    section = out.split(f"+++ {run.path(case.file)}\n")[1].split("\n--- ")[0]
    assert f"+{_indent(original, case.function)}{case.new.splitlines()[0]}\n" in section, out
    # --fix --unsafe-fixes wrote it: parses, one line of this function changed, names kept
    assert run.applied[0] in (0, 1), run.applied
    cst.parse_module(fixed)
    old = original.split("\n")[lines[0] - 1:lines[1]]
    new_lines = _function_lines(fixed, case.function)
    new = fixed.split("\n")[new_lines[0] - 1:new_lines[1]]
    removed = [ln[2:] for ln in difflib.ndiff(old, new) if ln.startswith("- ")]
    added = [ln[2:] for ln in difflib.ndiff(old, new) if ln.startswith("+ ")]
    assert len(removed) == 1 and "\n".join(a.strip() for a in added) == case.new, (removed, added)
    assert _names(fixed, new_lines) <= _names(original, lines) | {"detach"}
    assert all(n in "".join(added) for n in case.names)
    # it re-lints clean for the rule
    left = _in(run.of(run.after, case.file), case.code, new_lines)
    assert not left, left


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fix_is_principled_under_the_probe(case, run):
    pytest.importorskip("torch")
    from klaudit.probe import measure

    kwargs = {k: v() if callable(v) else v for k, v in case.probe.items()}
    before = measure(_load(_orig(case.file), "before")(case.function), **kwargs)
    after = measure(_load(run.path(case.file), "after")(case.function), **kwargs)
    assert case.before(before), f"before the fix: {before}"
    assert not case.after(before), f"already principled before the fix: {before}"
    assert case.after(after), f"after the fix: {after}"
    if case.same_scale:
        assert after.scale == pytest.approx(before.scale, rel=1e-9) and after.scale > 0.04 * 1.5


def test_straight_through_keeps_the_logged_value(run):
    torch = pytest.importorskip("torch")
    old = _load(_orig("k3_as_loss.py"), "st_before")("grpo_loss_logged")
    new = _load(run.path("k3_as_loss.py"), "st_after")("grpo_loss_logged")
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(2, 5, generator=g, dtype=torch.float64) - 2
    ref = torch.randn(2, 5, generator=g, dtype=torch.float64) - 2
    mask = torch.ones(2, 5, dtype=torch.float64)
    m_old, m_new = {}, {}
    v_old = old(logp, ref, 0.0, mask, m_old)
    v_new = new(logp, ref, 0.0, mask, m_new)
    assert m_old["kl"] == pytest.approx(m_new["kl"], rel=1e-12) and m_old["kl"] > 0
    assert float(v_old) == pytest.approx(float(v_new), rel=1e-12)


def test_fix_without_unsafe_fixes_changes_nothing(run):
    rc, out, err = run.fix_only
    assert run.fix_only_text == run.original
    assert rc == 1  # the findings are still there
    n = sum(1 for f in run.fix_json if "fix" in f)
    assert n >= len(CASES)
    assert f"klaudit: {n} unsafe fix{'es' if n > 1 else ''} available, none applied" in err, err
    assert "--unsafe-fixes" in err
    assert out.count("  unsafe fix: ") == n  # the text report names each fix


def test_summaries_and_exit_codes(run):
    rc, _, err = run.diff
    assert rc == 1 and f"would change {len(FILES)} files" in err and "--fix --unsafe-fixes" in err, err
    rc, _, err = run.applied
    assert "applied" in err and f"in {len(FILES)} files" in err, err
    rc, out, err = klaudit("check", "--diff", run.dir)
    assert (rc, out) == (0, "") and "no fixes available" in err  # nothing left to fix


def test_sarif_carries_the_fixes(run, tmp_path):
    rc, out, _ = klaudit("check", "--fix", "--output-format", "sarif", os.path.join(FIXES, "sign_error.py"))
    results = json.loads(out)["runs"][0]["results"]
    assert results and all(r["properties"]["fix"] for r in results)
    change = results[0]["fixes"][0]["artifactChanges"][0]
    (rep,) = change["replacements"]
    region = rep["deletedRegion"]
    assert (region["startLine"], region["endLine"], region["startColumn"], region["endColumn"]) == (7, 8, 1, 1)
    assert rep["insertedContent"]["text"] == "    rewards = scores - beta * kl\n"
    assert change["artifactLocation"]["uri"].endswith("sign_error.py")


def test_plain_lint_loads_neither_fixes_nor_torch(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from klaudit import engine
        from klaudit.config import Config
        r = engine.run([{os.path.join(FIXES, 'k3_as_loss.py')!r}], Config())
        assert r.findings and all(f.fix is None for f in r.findings)
        bad = [m for m in sys.modules if m.startswith(("klaudit.fix", "torch", "libcst.codemod"))]
        assert not bad, bad
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_no_fix_when_it_cannot_be_built_safely(tmp_path):
    # the KL is on the left of the +: no single operator flip, so the finding has no fix
    src = textwrap.dedent("""\
        def reward_kl_first(scores, logprobs, ref_logprobs, beta):
            kl = (logprobs - ref_logprobs).detach()
            rewards = beta * kl + scores
            return rewards
    """)
    (tmp_path / "left.py").write_text(src)
    rc, out, _ = klaudit("check", str(tmp_path / "left.py"), "--output-format", "json", "--fix")
    findings = json.loads(out)["findings"]
    assert [f["code"] for f in findings] == ["KL201"]
    assert "fix" not in findings[0]
    rc, out, err = klaudit("check", "--diff", str(tmp_path / "left.py"))
    assert (rc, out) == (0, "") and "no fixes available" in err


def test_no_fix_for_a_kl_changed_later_under_an_option(tmp_path):
    # a rewrite of the estimator would compose with `kl = kl * ratio` when the option is on
    src = textwrap.dedent("""\
        import torch

        def grpo_loss(logp, old_logp, ref_logp, pg_loss, beta, use_is):
            ratio = torch.exp(logp - old_logp)
            kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
            if use_is:
                kl = kl * ratio
            loss = pg_loss + beta * kl.mean()
            return loss
    """)
    (tmp_path / "opt.py").write_text(src)
    rc, out, _ = klaudit("check", str(tmp_path / "opt.py"), "--output-format", "json", "--fix")
    findings = json.loads(out)["findings"]
    assert "KL102" in {f["code"] for f in findings}
    assert not any("fix" in f for f in findings)


def test_a_sign_fix_reveals_the_estimator_and_a_second_run_fixes_it(tmp_path):
    src = textwrap.dedent("""\
        import torch

        def grpo_loss(logp, ref_logp, pg_loss, beta):
            kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
            loss = pg_loss - beta * kl.mean()
            return loss
    """)
    p = tmp_path / "two.py"
    p.write_text(src)
    rc, out, err = klaudit("check", "--fix", "--unsafe-fixes", str(p))
    assert "loss = pg_loss + beta * kl.mean()" in p.read_text()
    assert rc == 1 and "KL102" in out and "unsafe fix:" in out  # what remains, with its own fix
    rc, out, err = klaudit("check", "--fix", "--unsafe-fixes", str(p))
    text = p.read_text()
    assert rc == 0 and "kl = 0.5 * (logp - ref_logp) ** 2\n" in text, (out, text)
    pytest.importorskip("torch")
    from klaudit.probe import measure

    before = measure(_load_source(src, tmp_path / "orig.py")("grpo_loss"), pg_loss=0.0, beta=1.0)
    after = measure(_load(str(p), "two")("grpo_loss"), pg_loss=0.0, beta=1.0)
    assert before.family == "k3_loss" and not before.principled
    assert after.family == "k2_loss" and after.principled


def test_crlf_and_other_lines_kept(tmp_path):
    src = open(os.path.join(FIXES, "sign_error.py"), encoding="utf-8").read()
    p = tmp_path / "crlf.py"
    p.write_bytes(src.replace("\n", "\r\n").encode("utf-8"))
    rc, _, err = klaudit("check", "--fix", "--unsafe-fixes", str(p))
    data = p.read_bytes()
    assert b"rewards = scores - beta * kl\r\n" in data
    assert data.count(b"\r\n") == src.count("\n") and b"\n" not in data.replace(b"\r\n", b"")
    changed = [a for a, b in zip(src.split("\n"), data.decode().split("\r\n")) if a != b]
    assert len(changed) == 4, changed  # one line per sign error, nothing else


# ------------------------------------------------------------------------------------------ helpers
def _orig(name: str) -> str:
    return os.path.join(FIXES, name)


def _indent(text: str, function: str) -> str:
    lines = _function_lines(text, function)
    body = text.split("\n")[lines[0]]
    return body[:len(body) - len(body.lstrip())]


def _load_source(text: str, path):
    path.write_text(text)
    return _load(str(path), "src")


def _load(path: str, tag: str):
    name = f"fix_{tag}_{os.path.basename(path)[:-3]}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return lambda fn: getattr(mod, fn)
