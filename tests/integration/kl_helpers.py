"""Shared by the integration tests: run the real ``klaudit`` command, and small training files."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures")

BAD = textwrap.dedent('''\
    import torch

    def grpo_loss(logp, ref_logp, pg_loss, beta):
        kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
        loss = pg_loss + beta * kl.mean()
        return loss
''')
GOOD = textwrap.dedent('''\
    def grpo_loss(logp, ref_logp, pg_loss, beta):
        kl = 0.5 * (logp - ref_logp) ** 2
        loss = pg_loss + beta * kl.mean()
        return loss
''')
MULTILINE = textwrap.dedent('''\
    import torch

    def grpo_loss(logp, ref_logp, pg_loss, beta):
        kl = (
            torch.exp(ref_logp - logp)
            - (ref_logp - logp)
            - 1
        )
        return pg_loss + beta * kl.mean()
''')


def klaudit(*args, cwd=None, env=None):
    """(exit code, stdout, stderr) of ``python -m klaudit ARGS``."""
    full_env = dict(os.environ)
    full_env.pop("KLAUDIT_OUTPUT_FORMAT", None)
    full_env.update(env or {})
    p = subprocess.run([sys.executable, "-m", "klaudit", *args], capture_output=True, text=True, cwd=cwd,
                       env=full_env)
    return p.returncode, p.stdout, p.stderr
