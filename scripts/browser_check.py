"""Real-browser check of notebook 04's explorer: JupyterLab + headless Chromium.

What it does, end to end, with nothing mocked:

1. writes a copy of ``notebooks/04_feature_distributions.ipynb`` with the ``smoke`` profile's
   parameters injected by papermill (``prepare_only``: nothing is executed yet) into a scratch
   folder, with every output path pointing inside it;
2. starts JupyterLab headless on a free localhost port with a random token, serving that folder;
3. opens the notebook in Debian's Chromium (``/usr/bin/chromium``, driven by Playwright), runs
   *Run → Run All Cells* from JupyterLab's own menu and waits until the ipywidgets explorer has
   rendered its controls and a figure;
4. changes the explorer's *model* dropdown and *colour by* buttons as a user would and waits for
   the figure to be redrawn;
5. fails if any cell shows an error, and saves screenshots of the page and of the explorer.

Run it with ``make browser-check`` (installs Chromium from Debian's packages and Playwright
from PyPI if missing) or ``pytest -m browser``. It is not part of the default test suite.

    python scripts/browser_check.py --out figures/browser_check --timeout 600
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_feature_distributions.ipynb"
CHROMIUM = "/usr/bin/chromium"
# without the background-networking flags Chromium keeps trying to reach Google's hosts, which
# this kind of machine refuses
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


class BrowserCheckFailed(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_notebook(work: Path) -> Path:
    """The smoke-profile copy of notebook 04 in ``work`` (parameters injected, not executed)."""
    import papermill as pm

    params = {"profile": "smoke", "device": "cpu", "seed": 0,
              "checkpoint_dir": str(work / "checkpoints"), "figure_dir": str(work / "figures"),
              "results_dir": str(work / "results"), "data_root": str(work / "cache")}
    out = work / NOTEBOOK
    pm.execute_notebook(str(ROOT / "notebooks" / NOTEBOOK), str(out), parameters=params,
                        prepare_only=True, kernel_name="python3", progress_bar=False)
    return out


def _lab_settings(work: Path) -> Path:
    """A private JupyterLab settings folder: render every cell (no virtual scrolling, which can
    leave off-screen widget outputs unpainted in a headless screenshot) and no news prompt."""
    folder = work / ".lab-settings"
    for rel, text in (("@jupyterlab/notebook-extension/tracker.jupyterlab-settings", '{"windowingMode": "none"}'),
                      ("@jupyterlab/apputils-extension/notification.jupyterlab-settings", '{"fetchNews": "false"}')):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def start_lab(work: Path, port: int, token: str, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "JUPYTERLAB_SETTINGS_DIR": str(_lab_settings(work))}
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise BrowserCheckFailed(f"JupyterLab exited with code {proc.returncode}; see its log {log.name}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise BrowserCheckFailed(f"JupyterLab did not answer on port {port} within 90 s; see {log.name}")


def _errors(page) -> list[str]:
    return page.eval_on_selector_all(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
        "els => els.map(e => e.innerText).filter(t => t.includes('Traceback') || t.includes('Error:'))"
    ) + page.eval_on_selector_all(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error'], "
                                  ".jp-OutputArea-output .jp-RenderedText.jp-mod-trusted pre",
                                  "els => els.map(e => e.innerText).filter(t => t.includes('Traceback'))")


def _settle(page) -> None:
    """Wait until the explorer's figure has loaded and the page has stopped moving."""
    page.wait_for_function("() => { const i = document.querySelector('.widget-output img');"
                           " return i && i.complete && i.naturalHeight > 0; }", timeout=30_000)
    page.wait_for_timeout(1500)


def run_in_browser(url: str, out: Path, timeout: float) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        # wait for the kernel to be ready, then Run -> Run All Cells from JupyterLab's menu bar
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        t0 = time.time()
        explorer = page.wait_for_selector(".widget-vbox .widget-dropdown select", timeout=timeout * 1000)
        page.wait_for_selector(".widget-output img", timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)
        seconds = time.time() - t0
        errors = _errors(page)
        if errors:
            page.screenshot(path=str(out / "browser_check_error.png"), full_page=True)
            raise BrowserCheckFailed("a cell failed in the browser:\n" + "\n---\n".join(errors)[:3000])
        for no in page.query_selector_all(".jp-Notification-Toast button:text-is('No')"):
            no.click()  # JupyterLab's "get news?" toast would cover the page
        box = page.query_selector(".widget-vbox:has(.widget-dropdown)")
        box.scroll_into_view_if_needed()
        _settle(page)
        before = page.eval_on_selector(".widget-output img", "img => img.src.length")
        first = box.screenshot(path=str(out / "browser_check_explorer.png"))
        # act as a user: another model, another colouring; the figure must be redrawn
        options = explorer.evaluate("s => Array.from(s.options).map(o => o.value)")
        current = explorer.evaluate("s => s.value")
        choice = next(o for o in options if o not in ("original", current))
        page.select_option(".widget-vbox .widget-dropdown select", choice)
        page.click(".widget-toggle-buttons button:text-is('split')")
        page.wait_for_function(
            "prev => { const i = document.querySelector('.widget-output img'); return i && i.src.length !== prev; }",
            arg=before, timeout=60_000)
        _settle(page)
        box.screenshot(path=str(out / "browser_check_explorer_after.png"))
        page.screenshot(path=str(out / "browser_check_page.png"), full_page=False)
        browser.close()
    assert first
    return {"seconds_to_explorer": round(seconds, 1), "model_selected": choice, "options": options}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "figures" / "browser_check",
                    help="folder for the screenshots (default: figures/browser_check)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for the notebook to run")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: install Debian's chromium (`make browser-check` does it, or "
              f"`apt-get install -y chromium`)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dlfd_browser_"))
    log = open(args.out / "jupyterlab.log", "w")
    lab = None
    try:
        prepare_notebook(work)
        port, token = _free_port(), secrets.token_hex(16)
        lab = start_lab(work, port, token, log)
        url = f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}"
        result = run_in_browser(url, args.out, args.timeout)
        print(f"browser check passed: {result}; screenshots in {args.out}")
        return 0
    except BrowserCheckFailed as exc:
        print(f"browser check FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if lab is not None:
            lab.terminate()
            try:
                lab.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lab.kill()
        log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
