"""The probe's own error: the function could not be probed (unbound parameter, odd output, ...)."""
from __future__ import annotations


class ProbeError(ValueError):
    """The user's function could not be called or its output interpreted by the probe."""
