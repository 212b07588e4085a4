"""`klaudit explain`: the numbers of each textbook term's explanation, checked against the mathematics
(THEORY.md 1.2-1.5) and against finite differences of the expression the explanation prints, not
against stored output."""
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest
import sympy as sp

from conftest import FIXTURES, ROOT

TEXTBOOK = os.path.join(FIXTURES, "textbook")
ELL, DELTA = sp.Symbol("ell", real=True), sp.Symbol("delta", positive=True)

CONFIG_MODULE = textwrap.dedent('''\
    import torch
    from dataclasses import dataclass


    @dataclass
    class ActorConfig:
        kl_loss_type: str = "low_var_kl"


    def kl_penalty(logprob, ref_logprob, kl_penalty="low_var_kl"):
        if kl_penalty in ("kl", "k1"):
            return logprob - ref_logprob
        if kl_penalty in ("mse", "k2"):
            return 0.5 * (logprob - ref_logprob).square()
        if kl_penalty in ("low_var_kl", "k3"):
            kl = ref_logprob - logprob
            return torch.exp(kl) - kl - 1
        raise NotImplementedError


    class Actor:
        def __init__(self, config: ActorConfig):
            self.config = config

        def update_policy(self, log_prob, ref_log_prob, pg_loss, kl_coef):
            kld = kl_penalty(log_prob, ref_log_prob, kl_penalty=self.config.kl_loss_type)
            policy_loss = pg_loss + kld.mean() * kl_coef
            policy_loss.backward()
''')


def _run(paths):
    from klaudit import engine
    from klaudit.config import Config

    return engine.run(paths, Config(root=ROOT))


@pytest.fixture(scope="module")
def textbook():
    """function name -> (term, explanation) for every term of the textbook fixtures."""
    from klaudit.explain import explain

    report = _run([TEXTBOOK])
    return {t.function.rsplit(".", 1)[-1]: (t, explain(t)) for t in report.terms}


def ex(textbook, function):
    return textbook[function][1]


def line_of(path, needle):
    with open(path, encoding="utf-8") as fh:
        for i, text in enumerate(fh, 1):
            if needle in text:
                return i
    raise AssertionError(needle)


def term_lines(path):
    """Lines that the fixture marks as KL terms (`# term: ...`, `# expect: ...  term: ...`)."""
    with open(path, encoding="utf-8") as fh:
        return [i for i, text in enumerate(fh, 1) if re.search(r"#.*\bterm:", text)]


def limit_value(text):
    return float(sp.nsimplify(text)) if text not in ("+inf", "-inf") else float(text)


def c_of_delta(e):
    """The explanation's c(delta), as a function."""
    expr = sp.sympify(e.coefficient, locals={"delta": DELTA})
    return sp.lambdify(DELTA, expr, "math")


def klaudit(*args, cwd=None):
    env = dict(os.environ)
    env.pop("KLAUDIT_OUTPUT_FORMAT", None)
    p = subprocess.run([sys.executable, "-m", "klaudit", *args], capture_output=True, text=True, cwd=cwd, env=env)
    return p.returncode, p.stdout, p.stderr


# ------------------------------------------------------------------------- the coefficient itself


@pytest.mark.parametrize("function", ["k1_loss_inline", "k1_loss_named", "k2_pow_loss", "k2_square", "k2_pow_method",
                                      "k3_grpo", "k3_method_exp", "k3_ratio_form", "k3_exp_t_form"])
def test_as_loss_coefficient_is_the_finite_difference_of_the_printed_expression(textbook, function):
    e = ex(textbook, function)
    assert e.placement == "as_loss" and e.coefficient_of == "derivative"
    logp, ref = sp.symbols("logp ref", real=True)
    value = sp.lambdify((logp, ref), sp.sympify(e.expression, locals={"logp": logp, "ref": ref}), "math")
    c = c_of_delta(e)
    for lp, rf in ((-1.3, -0.4), (-0.2, -2.1), (-3.0, -0.05)):
        h = 1e-6
        fd = (value(lp + h, rf) - value(lp - h, rf)) / (2 * h)
        assert fd == pytest.approx(c(math.exp(rf - lp)), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("function", ["compute_rewards", "k3_reward", "reward_with_k2"])
def test_in_reward_coefficient_is_the_value_on_policy(textbook, function):
    e = ex(textbook, function)
    assert e.placement == "in_reward" and e.coefficient_of == "value"
    logp, ref, old = sp.symbols("logp ref old", real=True)
    expr = sp.sympify(e.expression, locals={"logp": logp, "ref": ref, "old": old, "sg": lambda x: x})
    value = sp.lambdify((logp, ref), expr.subs(old, logp), "math")
    c = c_of_delta(e)
    for lp, rf in ((-1.3, -0.4), (-0.2, -2.1)):
        assert value(lp, rf) == pytest.approx(c(math.exp(rf - lp)), rel=1e-9)


def test_stop_gradients_have_zero_derivative(textbook):
    assert "sg(" in ex(textbook, "k3_reward").expression
    assert ex(textbook, "k3_reward").derivative == "0"
    assert ex(textbook, "compute_rewards").derivative == "0"


# ------------------------------------------------------------------------- Taylor agreement at delta = 1


def test_k3_as_loss_agrees_to_first_order(textbook):
    e = ex(textbook, "k3_grpo")
    assert (e.taylor_order, e.taylor_exact) == (1, False)
    # 1 - delta = ell - ell**2/2 + ...: the first difference is the -ell**2/2 term
    diff = sp.sympify(e.first_difference.split("+ O(")[0], locals={"ell": ELL})
    assert sp.simplify(diff - (-ELL ** 2 / 2)) == 0


def test_k2_as_loss_agrees_exactly(textbook):
    for f in ("k2_pow_loss", "k2_square", "k2_pow_method"):
        e = ex(textbook, f)
        assert e.taylor_exact and e.agreement == "exact" and e.principled


def test_k1_as_loss_does_not_agree_even_at_zeroth_order(textbook):
    e = ex(textbook, "k1_loss_inline")
    assert e.taylor_order is None and not e.taylor_exact and e.agreement == "none"
    assert c_of_delta(e)(0.5) == pytest.approx(1.0)


def test_k2_and_k3_in_reward_agree_only_at_zeroth_order(textbook):
    for f in ("k3_reward", "reward_with_k2"):
        e = ex(textbook, f)
        assert (e.taylor_order, e.taylor_exact) == (0, False)


def test_principled_forms_agree_exactly(textbook):
    for f in ("compute_rewards", "shaped_rewards", "k3_bias_corrected", "full_reverse_kl"):
        assert ex(textbook, f).taylor_exact, f


# ------------------------------------------------------------------------- limits


def test_k3_as_loss_limits(textbook):
    lims = {x.delta: x for x in ex(textbook, "k3_grpo").limits}
    assert limit_value(lims["0"].coefficient) == 1.0  # push-down saturates at 1 where pi >> pi_ref
    assert lims["inf"].coefficient == "-inf"
    assert lims["0"].principled == "+inf" and lims["inf"].principled == "-inf"


def test_k3_in_reward_limits_grow_both_ways(textbook):
    lims = {x.delta: x for x in ex(textbook, "k3_reward").limits}
    assert lims["0"].coefficient == "+inf" and lims["inf"].coefficient == "+inf"


def test_k1_as_loss_limits_are_constant(textbook):
    lims = {x.delta: x for x in ex(textbook, "k1_loss_named").limits}
    assert limit_value(lims["0"].coefficient) == 1.0 and limit_value(lims["inf"].coefficient) == 1.0


def test_clamped_k3_limits_are_zero(textbook):
    lims = {x.delta: x for x in ex(textbook, "k3_clamped").limits}
    assert limit_value(lims["0"].coefficient) == 0.0 and limit_value(lims["inf"].coefficient) == 0.0


# ------------------------------------------------------------------------- what it minimises


@pytest.mark.parametrize("function, target", [
    ("k1_loss_inline", "nothing"),
    ("k2_pow_loss", "reverse KL(pi || pi_ref)"),
    ("k3_grpo", "forward KL(pi_ref || pi)"),
    ("k3_clamped", "forward KL(pi_ref || pi)"),
    ("k3_bias_corrected", "reverse KL(pi || pi_ref)"),
    ("compute_rewards", "reverse KL(pi || pi_ref)"),
    ("k3_reward", "reverse KL - forward KL"),
    ("reward_with_k2", "E[k2] - reverse KL"),
    ("full_reverse_kl", "reverse KL(pi || pi_ref)"),
    ("ppo_clip_loss", "nothing"),
])
def test_minimised_functional(textbook, function, target):
    assert ex(textbook, function).minimizes.startswith(target)


@pytest.mark.parametrize("function, generator", [
    ("k3_grpo", "u - log(u) - 1"),  # forward KL: sum_x q (u - log u - 1), u = pi/q
    ("k2_pow_loss", "u*log(u) - u + 1"),  # reverse KL
    ("k3_reward", "u*log(u) - u + 1 - (u - log(u) - 1)"),  # reverse KL - forward KL
])
def test_generator_matches_theory(textbook, function, generator):
    u = sp.Symbol("u", positive=True)
    got = sp.sympify(ex(textbook, function).generator, locals={"u": u})
    assert sp.simplify(got - sp.sympify(generator, locals={"u": u})) == 0


def test_importance_weighted_k3_says_so(textbook):
    e = ex(textbook, "k3_bias_corrected")
    assert e.importance_weight == "differentiable"
    assert "reverse KL" in e.off_policy and "pi/pi_old" in e.off_policy
    assert "importance weight" in ex(textbook, "k3_grpo").off_policy  # the unweighted one is on-policy only


# ------------------------------------------------------------------------- clamps and rules


def test_clamped_k3_zero_gradient_thresholds(textbook):
    zs = sorted(ex(textbook, "k3_clamped").zero_gradient, key=lambda z: z.ell_lo)
    assert len(zs) == 2
    low, high = zs
    assert low.ell_lo == -math.inf and low.ell_hi == pytest.approx(-2.6109, abs=1e-3)
    assert high.ell_lo == pytest.approx(11.0, abs=1e-3) and high.ell_hi == math.inf
    k3 = lambda ell: math.exp(-ell) - 1 + ell  # the thresholds are where k3 reaches the clamp's bound 10
    assert k3(low.ell_hi) == pytest.approx(10, abs=1e-2) and k3(high.ell_lo) == pytest.approx(10, abs=1e-2)
    assert low.delta_lo == pytest.approx(math.exp(2.6109), rel=1e-3)


def test_rules_carry_their_registry_summary(textbook):
    from klaudit.rules.registry import BY_CODE

    for f, code in (("k3_grpo", "KL102"), ("k1_loss_inline", "KL101"), ("k3_clamped", "KL401"),
                    ("k3_reward", "KL103")):
        rules = {r.code: r for r in ex(textbook, f).rules}
        assert code in rules and rules[code].summary == BY_CODE[code].summary
    assert all(r.code != "KL102" for r in ex(textbook, "k2_pow_loss").rules)


# ------------------------------------------------------------------------- config-dependent terms


@pytest.fixture(scope="module")
def config_project(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    (d / "actor.py").write_text(CONFIG_MODULE)
    return d / "actor.py"


def test_option_table_names_every_variant_and_the_default(config_project):
    from klaudit.explain import explain
    from klaudit.locate import find

    report = _run([str(config_project)])
    call = line_of(config_project, "kld = kl_penalty(")
    (term,) = find(report, f"{config_project}:{call}")
    e = explain(term)
    rows = {o.estimator: o for o in e.options}
    assert set(rows) == {"k1", "k2", "k3"}
    assert [o.estimator for o in e.options if o.default] == ["k3"]
    assert rows["k2"].principled and not rows["k3"].principled and not rows["k1"].principled
    assert rows["k3"].minimizes.startswith("forward KL") and rows["k2"].minimizes.startswith("reverse KL")
    assert rows["k1"].line == line_of(config_project, "return logprob - ref_logprob")
    (default,) = e.defaults
    assert default.key == "kl_loss_type" and "low_var_kl" in default.value
    assert default.line == line_of(config_project, 'kl_loss_type: str = "low_var_kl"')


def test_use_line_names_the_call_site_term_not_its_branches(config_project):
    from klaudit.locate import find

    report = _run([str(config_project)])
    use = line_of(config_project, "policy_loss = pg_loss +")
    (term,) = find(report, f"{config_project}:{use}")
    assert term.loc.line == line_of(config_project, "kld = kl_penalty(")


def test_helper_branch_is_explained_from_its_own_expression(config_project):
    from klaudit.explain import explain
    from klaudit.locate import find

    report = _run([str(config_project)])
    (term,) = find(report, f"{config_project}:{line_of(config_project, 'return logprob - ref_logprob')}")
    e = explain(term)
    assert e.estimator == "k1" and e.expression == "logp - ref" and e.agreement == "none"


# ------------------------------------------------------------------------- command line


def test_cli_explain_text():
    path = os.path.join(TEXTBOOK, "k3_as_loss.py")
    line = line_of(path, "def k3_grpo") + 1
    rc, out, err = klaudit("explain", f"{path}:{line}")
    assert rc == 0, err
    assert out.startswith(f"{path}:{line}:") and "k3 as a loss" in out.splitlines()[0]
    for label in ("expression", "derivative", "coefficient", "principled", "agreement", "delta -> 0", "delta -> inf",
                  "minimises", "rules"):
        assert re.search(rf"^  {re.escape(label)}\s", out, re.M), label


def test_cli_explain_json_keys_and_strict_json():
    path = os.path.join(TEXTBOOK, "k3_as_loss.py")
    line = line_of(path, ".clamp(-10, 10)")
    rc, out, err = klaudit("explain", f"{path}:{line}", "--output-format", "json")
    assert rc == 0, err

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    doc = json.loads(out, parse_constant=no_constants)
    assert doc["version"] == 1
    (e,) = doc["explanations"]
    for key in ("path", "line", "expression", "derivative", "coefficient", "principled_coefficient", "taylor",
                "limits", "minimizes", "zero_gradient", "importance_weight", "options", "defaults", "rules"):
        assert key in e, key
    assert e["line"] == line and e["taylor"]["order"] == 1
    assert set(e["limits"]) == {"delta_to_0", "delta_to_inf"}
    low = next(z for z in e["zero_gradient"] if z["ell"][0] == "-inf")
    assert low["ell"][1] == pytest.approx(-2.6109, abs=1e-3) and low["delta"][1] == "+inf"
    assert {r["code"] for r in e["rules"]} >= {"KL102", "KL401"}


def test_cli_explain_finds_a_line_inside_a_multiline_statement(tmp_path):
    (tmp_path / "m.py").write_text(textwrap.dedent('''\
        import torch

        def grpo_loss(logp, ref_logp, pg_loss, beta):
            kl = (
                torch.exp(ref_logp - logp)
                - (ref_logp - logp)
                - 1
            )
            return pg_loss + beta * kl.mean()
    '''))
    rc, out, err = klaudit("explain", f"{tmp_path / 'm.py'}:6")
    assert rc == 0, err
    assert "k3 as a loss" in out.splitlines()[0]


def test_cli_unknown_line_is_a_one_line_error_with_the_nearest_terms():
    path = os.path.join(TEXTBOOK, "k3_as_loss.py")
    lines = term_lines(path)
    empty = next(i for i in range(1, 200) if i not in lines and all(abs(i - t) > 2 for t in lines))
    rc, out, err = klaudit("explain", f"{path}:{empty}")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no KL term" in err
    listed = [int(x) for x in re.findall(r"\d+", err.split("are at", 1)[1])]
    assert listed and set(listed) <= set(lines)
    assert listed[0] == min(lines, key=lambda t: (abs(t - empty), t))


@pytest.mark.parametrize("target", ["no/such/file.py:3", "fixtures/textbook/k3_as_loss.py", "x.py:abc"])
def test_cli_bad_targets_exit_2(target):
    rc, out, err = klaudit("explain", target, cwd=ROOT)
    assert rc == 2 and out == "" and err.startswith("klaudit: error:")


def test_check_explain_text_and_json():
    path = os.path.join(ROOT, "examples", "grpo_train.py")
    rc, out, err = klaudit("check", path, "--explain")
    assert rc == 1, err
    findings, _, explanations = out.partition("\nExplanations\n")
    assert "KL102" in findings and "agreement" in explanations and "agreement" not in findings
    rc, out, err = klaudit("check", path, "--explain", "--output-format", "json")
    doc = json.loads(out)
    assert rc == 1 and doc["findings"] and doc["explanations"]
    flagged = {(f["path"], f["line"]) for f in doc["findings"]}
    assert {(e["path"], e["line"]) for e in doc["explanations"]} <= flagged


def test_check_explain_refuses_sarif():
    rc, _, err = klaudit("check", os.path.join(ROOT, "examples", "grpo_train.py"), "--explain",
                         "--output-format", "sarif")
    assert rc == 2 and "--explain" in err


def test_cli_does_not_import_sympy():
    code = "import sys, klaudit.cli, klaudit.explain, klaudit.locate; print('sympy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    assert out.split() == ["False", "False"]


def test_readme_shows_real_explain_output():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = re.search(r"^## klaudit explain$(.*?)(?=^## )", text, re.S | re.M).group(1)
    block = re.search(r"```\n\$ (klaudit explain [^\n]+)\n(.*?)```", section, re.S)
    cmd, shown = block.group(1).split(), block.group(2)
    rc, out, err = klaudit(*cmd[1:], cwd=ROOT)
    assert rc == 0, err
    assert shown == out
