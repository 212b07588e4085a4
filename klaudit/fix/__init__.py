"""Fixes: libcst codemods that rewrite a finding's KL term into its principled form.

One module per kind of fix (``k2_loss``: k1/k3/abs as a loss -> k2; ``k1_reward``: k2/k3/abs in the
reward -> k1; ``sign``: the penalty's sign; ``detach``: a reward KL that carries gradient;
``importance_weight``: an off-policy KL loss without its ratio), composed per term by ``builder``,
checked by ``verify`` and written to files or shown as diffs by ``driver``.  Every fix is unsafe: it
changes training dynamics, so it is applied only with ``--unsafe-fixes``.

Imported only when fixes are requested (``--fix``, ``--diff``): the lint path never loads it.
"""
from .builder import FIXABLE, Fixer

__all__ = ["FIXABLE", "Fixer"]
