"""klaudit: a symbolic-numeric gradient auditor for KL regularisation in RL training code."""

__version__ = "0.1.0"
