"""Screenshots of the reports a person reads, taken offline with headless Chromium.

``make screenshots`` runs the demo (``argosy demo``) into a fresh directory, then photographs,
with every host name unresolvable (so a page that needed the network would show it):

* ``data-docs.png``: the Data Docs validation result of the first pipeline run;
* ``drift-report.png``: the drift monitor's report (Evidently's, headed by Argosy's decision);
* ``dvc-plots.png``: ``dvc plots show`` of the retrained model, through the offline template,
  headed by the gate's decision;
* ``gate-md.png``: the production pull request body (``reports/gate.md``) rendered as Markdown.

Usage: ``python docs/screenshots/capture.py [--demo-dir DIR] [--out docs/screenshots]``; with
``--demo-dir`` naming a finished demo run, the demo is not run again. Needs ``chromium`` (Debian:
``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from markdown_it import MarkdownIt

from argosy import webassets

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
PAGE_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1000px;
       margin: 24px auto; color: #1f2328; line-height: 1.5; }
table { border-collapse: collapse; margin: 8px 0 16px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
th { background: #f6f8fa; }
code { background: #eff1f3; padding: 1px 4px; border-radius: 4px; }
h2 { border-bottom: 1px solid #d8dee4; padding-bottom: 6px; }
"""


def chromium() -> str:
    """The first Chromium on PATH."""
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no chromium on PATH (Debian: apt-get install chromium)")


def shoot(page: Path, out: Path, height: int = 1600) -> None:
    """A 1280-wide PNG of ``page``, with every host name unresolvable (no network at all)."""
    subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--window-size=1280,{height}",
            "--virtual-time-budget=15000",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    print(f"wrote {out}")


def markdown_page(markdown: str, title: str, dest: Path) -> Path:
    """``markdown`` rendered as a standalone HTML page (tables on, as GitHub renders a PR)."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    dest.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_CSS}</style></head><body>{body}</body></html>",
        encoding="utf-8",
    )
    return dest


def plots_page(clone: Path, dest: Path) -> Path:
    """``dvc plots show`` in the demo's clone, through the offline template, headed by the gate."""
    gate = json.loads((clone / "reports" / "gate.json").read_text())
    verdict = "PROMOTE" if gate["decision"] == "promote" else "REJECT"
    failed = [c["detail"] for c in gate["checks"] if not c["passed"]]
    lines = failed or [f"every one of {len(gate['checks'])} checks passed"]
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in lines)
    banner = (
        f"<div style='border-left:8px solid {'#1b5e20' if not failed else '#b3261e'};"
        "padding:8px 16px;background:#fafafa;font-family:sans-serif'>"
        f"<h2 style='margin:0'>Gate: {verdict} {html.escape(gate['model']['name'])}</h2>"
        f"<ul>{reasons}</ul></div>"
    )
    template = dest.parent / "plots-template.html"
    template.write_text(
        webassets.plots_template().replace("<body>\n", "<body>\n" + banner + "\n", 1),
        encoding="utf-8",
    )
    out = dest.parent / "dvc_plots"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "dvc"),
            "plots",
            "show",
            "--html-template",
            str(template),
            "--out",
            str(out),
        ],
        cwd=clone,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out / "index.html"


def main() -> int:
    """Run the demo if needed and write the four screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", type=Path, help="A finished `argosy demo` directory.")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    work = args.demo_dir
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="argosy-screenshots-"))
        subprocess.run([sys.executable, "-m", "argosy", "demo", "--workdir", str(work)], check=True)
    clone = work / "repo"
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="argosy-pages-"))
    results = sorted(
        (work / "reports" / "first-model" / "validation").rglob("validations/**/*.html")
    )
    shoot(results[0], args.out / "data-docs.png")
    shoot(work / "reports" / "monitoring" / "report.html", args.out / "drift-report.png", 1800)
    shoot(plots_page(clone, scratch / "plots.html"), args.out / "dvc-plots.png", 1300)
    gate_md = (clone / "reports" / "gate.md").read_text()
    shoot(markdown_page(gate_md, "gate.md", scratch / "gate.html"), args.out / "gate-md.png", 2200)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
