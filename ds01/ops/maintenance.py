"""Package maintenance seen from the server: which packages are held back."""

from __future__ import annotations

import subprocess


def holds() -> list[str]:
    """Packages apt keeps back (``apt-mark showhold``); [] where apt is absent."""
    try:
        out = subprocess.run(["apt-mark", "showhold"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(out.stdout.split()) if out.returncode == 0 else []
