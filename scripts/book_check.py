"""Real-browser check of the rendered book (``make book``): every page in headless Chromium.

For the front page, the teacher's guide, the other documentation pages (``docs/``) and every
chapter it checks, with nothing mocked:

* the page loads (HTTP 200 from a local static server) and raises no JavaScript error;
* nothing is fetched from outside localhost (the site must work offline; MathJax is bundled);
* documentation pages have a title (``h1``), and every image they show was decoded;
* chapters show no error output (no ``Traceback`` in any output), contain figures that the
  browser decoded (``img`` with a natural width > 0) and rendered equations (MathJax's
  ``mjx-container``), and their exercises' answers are present but folded (closed
  ``<details class="answer">``);
* it unfolds one answer as a reader would, and saves a screenshot of every page (and of the
  unfolded answer) to ``--out``.

    python scripts/book_check.py --html book/_build/html --out figures/book_check
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from browser_check import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


class BookCheckFailed(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    port = _free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


def pages(html: Path) -> list[str]:
    """The site's pages, relative to ``html``: the front page, the teacher's guide, the other
    documentation pages (``docs/*.md``), the chapters in order."""
    chapters = sorted(p.relative_to(html).as_posix() for p in (html / "notebooks").glob("[0-9][0-9]_*.html"))
    if not chapters:
        raise BookCheckFailed(f"no chapters under {html / 'notebooks'}: run `make book` first")
    docs = sorted(p.stem for p in (ROOT / "docs").glob("*.md") if p.stem != "teachers_guide")
    missing = [d for d in ["teachers_guide", *docs] if not (html / f"{d}.html").is_file()]
    if missing:
        raise BookCheckFailed(f"documentation pages missing from the book: {missing}")
    return ["index.html", "teachers_guide.html", *(f"{d}.html" for d in docs), *chapters]


def check_page(page, url: str, rel: str, out: Path) -> dict:
    problems, outside = [], []
    page.on("pageerror", lambda e: problems.append(f"JavaScript error: {e}"))
    page.on("console", lambda m: problems.append(f"console error: {m.text} ({m.location.get('url')})")
            if m.type == "error" else None)
    page.on("request", lambda r: outside.append(r.url)
            if urlparse(r.url).hostname not in ("127.0.0.1", "localhost", None) and not r.url.startswith("data:")
            else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    resp = page.goto(f"{url}/{rel}", wait_until="load")
    if resp is None or resp.status != 200:
        raise BookCheckFailed(f"{rel}: HTTP {None if resp is None else resp.status}")
    page.wait_for_timeout(500)
    info = {"page": rel, "title": page.title()}
    if rel != "index.html" and not rel.startswith("notebooks/"):  # a documentation page
        info["heading"] = (page.inner_text("h1") if page.query_selector("h1") else "").strip()
        if not info["heading"]:
            problems.append("no title (h1)")
        imgs = page.eval_on_selector_all("img[src*='_images/']", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
        info["figures"] = sum(1 for w in imgs if w)
        if info["figures"] < len(imgs):
            problems.append(f"images: {info['figures']} of {len(imgs)} decoded")
    if rel.startswith("notebooks/"):
        page.wait_for_function("() => !document.querySelector('.math') || document.querySelector('mjx-container')",
                               timeout=30_000)
        tracebacks = page.eval_on_selector_all(
            ".cell_output, .output", "els => els.map(e => e.innerText).filter(t => t.includes('Traceback'))")
        if tracebacks:
            problems.append(f"error output: {tracebacks[0][:300]}")
        figs = page.eval_on_selector_all(".cell_output img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
        info["figures"] = sum(1 for w in figs if w)
        if not info["figures"] or info["figures"] < len(figs):
            problems.append(f"figures: {info['figures']} of {len(figs)} decoded")
        info["equations"] = page.eval_on_selector_all("mjx-container", "els => els.length")
        answers = page.eval_on_selector_all("details.answer", "els => els.map(e => e.open)")
        info["answers"] = len(answers)
        if not answers:
            problems.append("no folded answers (details.answer) found")
        elif any(answers):
            problems.append("an answer is unfolded on load")
    page.screenshot(path=str(out / (rel.replace("/", "_").replace(".html", "") + ".png")), full_page=False)
    if outside:
        problems.append(f"fetched from outside localhost: {sorted(set(outside))[:5]}")
    if problems:
        raise BookCheckFailed(f"{rel}: " + "; ".join(problems))
    return info


def run(html: Path, out: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    server, url = serve(html)
    results = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            for rel in pages(html):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                results.append(check_page(page, url, rel, out))
                if rel.startswith("notebooks/03_"):  # unfold one answer as a reader would
                    summary = page.query_selector("details.answer summary")
                    summary.scroll_into_view_if_needed()
                    summary.click()
                    if not page.eval_on_selector("details.answer", "d => d.open"):
                        raise BookCheckFailed(f"{rel}: clicking an answer did not unfold it")
                    page.query_selector("details.answer").screenshot(path=str(out / "answer_unfolded.png"))
                page.close()
            browser.close()
    finally:
        server.shutdown()
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=ROOT / "book" / "_build" / "html")
    ap.add_argument("--out", type=Path, default=ROOT / "figures" / "book_check")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: install Debian's chromium (`make browser-check` does it)", file=sys.stderr)
        return 2
    try:
        results = run(args.html, args.out)
    except BookCheckFailed as exc:
        print(f"book check FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results, indent=1))
    print(f"book check passed: {len(results)} pages; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
