"""Opt-in real-browser check (``pytest -m browser`` or ``make browser-check``): notebook 04 runs in
JupyterLab in headless Chromium and its ipywidgets explorer renders and reacts. Not part of the
default suite (pyproject's addopts deselect the ``browser`` marker)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.browser
def test_notebook_04_explorer_renders_in_chromium():
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing: run `make browser-check`, which installs Debian's "
                    "chromium package and the `browser` extra (playwright)")
    pytest.importorskip("playwright", reason="pip install -e '.[browser]' (make browser-check does it)")
    out = ROOT / "figures" / "browser_check"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "browser_check.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"browser check failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for name in ("browser_check_explorer.png", "browser_check_explorer_after.png", "browser_check_page.png"):
        shot = out / name
        assert shot.exists() and shot.stat().st_size > 10_000, f"{shot} missing or empty"
