"""Vendored web assets, so every HTML report renders with no network.

Great Expectations' Data Docs load Bootstrap, jQuery, Font Awesome, bootstrap-table and Vega from
public CDNs, and DVC's plots load Vega from one: offline (a fork's first day, an air-gapped CI
runner) they render unstyled or blank. The files those pages load are vendored under
``src/argosy/web/`` at pinned versions, recorded in ``web/assets.lock.json`` (npm's tarball
integrity and each file's sha256, with the package's licence beside its files):

* :func:`localize` rewrites a page's CDN URLs to relative paths of a copy of the assets;
* :func:`plots_template` is DVC's plots page with Vega inlined (``.dvc/plots-offline.html``,
  named by ``.dvc/config`` ``plots.html_template``), so plain ``dvc plots show`` works offline.

``python -m argosy.webassets vendor`` (``make web-assets``) fetches the pinned tarballs with
``npm pack`` (the one step that needs the npm registry), checks them against the recorded
integrity, and rewrites the files and the lock; ``python -m argosy.webassets template`` rewrites
the DVC template. A test checks the files against the lock and the template against the files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from argosy import proc

WEB = Path(__file__).resolve().parent / "web"
LOCK = WEB / "assets.lock.json"
PLOTS_TEMPLATE = ".dvc/plots-offline.html"
"""Where the DVC plots template lives, relative to the repository root."""

# package@version -> the files taken from its tarball (paths under `package/`).
PACKAGES: dict[str, list[str]] = {
    "jquery@3.7.1": ["dist/jquery.min.js", "LICENSE.txt"],
    "bootstrap@4.3.1": ["dist/css/bootstrap.min.css", "dist/js/bootstrap.min.js", "LICENSE"],
    "popper.js@1.12.9": ["dist/umd/popper.min.js"],
    "bootstrap-table@1.19.1": [
        "dist/bootstrap-table.min.js",
        "dist/bootstrap-table.min.css",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
        "LICENSE",
    ],
    "@fortawesome/fontawesome-free@6.6.0": [
        "css/all.min.css",
        "webfonts/fa-brands-400.woff2",
        "webfonts/fa-regular-400.woff2",
        "webfonts/fa-solid-900.woff2",
        "webfonts/fa-v4compatibility.woff2",
        "LICENSE.txt",
    ],
    "bootstrap-datepicker@1.9.0": [
        "dist/js/bootstrap-datepicker.min.js",
        "dist/css/bootstrap-datepicker.min.css",
        "LICENSE",
    ],
    "@forevolve/bootstrap-dark@1.1.0": ["dist/css/bootstrap-prefers-dark.css", "LICENSE"],
    "vega@5.33.1": ["build/vega.min.js"],
    "vega-lite@5.23.0": ["build/vega-lite.min.js", "LICENSE"],
    "vega-embed@6.29.0": ["build/vega-embed.min.js", "LICENSE"],
}

_CDN = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/dist/jquery.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap/dist/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap/dist/js/bootstrap.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js/dist/umd/popper.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free/css/all.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker/dist/js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker/dist/css/bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "@forevolve/bootstrap-dark/dist/css/bootstrap-prefers-dark.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table/dist/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table/dist/bootstrap-table.min.css"
    ),
}
_FILTER_CONTROL = "bootstrap-table/dist/extensions/filter-control/bootstrap-table-filter-control"
_VEGA = {
    "vega": "vega/build/vega.min.js",
    "vega-lite": "vega-lite/build/vega-lite.min.js",
    "vega-embed": "vega-embed/build/vega-embed.min.js",
}
# Versioned or not, from unpkg or jsdelivr: bootstrap-table's filter-control (1.19.0 and 1.19.1,
# .css and .min.css) and Vega's three libraries (GE asks for vega@5, DVC for vega@5.20.2).
_PATTERNS = [
    (
        re.compile(
            r"https://unpkg\.com/bootstrap-table@1\.19\.[01]/dist/extensions/filter-control/"
            r"bootstrap-table-filter-control(\.min)?\.(css|js)"
        ),
        lambda m: f"{_FILTER_CONTROL}.min.{m.group(2)}",
    ),
    (
        re.compile(r"https://cdn\.jsdelivr\.net/npm/(vega|vega-lite|vega-embed)@[0-9.]+"),
        lambda m: _VEGA[m.group(1)],
    ),
]
_GE_LOGO = re.compile(r"https://great-expectations-web-assets\.s3[^\"']*logo-long\.png[^\"']*")
_REMOTE_RESOURCE = re.compile(r"""(?:src|href)=["'](https?://[^"']+)["']""")


class AssetError(RuntimeError):
    """A vendored file is missing or differs from the lock, or fetching failed."""


def _lock() -> dict:
    return json.loads(LOCK.read_text())


def _name(spec: str) -> str:
    return spec.rpartition("@")[0]


def verify() -> list[str]:
    """Problems with the vendored files against the lock (empty when every file matches)."""
    problems = []
    for spec, entry in _lock()["packages"].items():
        for rel, digest in entry["files"].items():
            path = WEB / _name(spec) / rel
            if not path.is_file():
                problems.append(f"{path}: missing (run `make web-assets`)")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                problems.append(f"{path}: sha256 differs from {LOCK.name}")
    return problems


def _local(url: str) -> str | None:
    if url in _CDN:
        return _CDN[url]
    for pattern, target in _PATTERNS:
        match = pattern.fullmatch(url)
        if match:
            return target(match)
    return None


def localize(text: str, page: Path, assets: Path, logo: Path | None = None) -> str:
    """``text``, the HTML of ``page``, with its CDN scripts, styles and images at ``assets``.

    Args:
        text: The page's HTML.
        page: Where the page lives: local paths are made relative to its directory.
        assets: Where the vendored tree was copied (:func:`copy_assets`).
        logo: A local image for Great Expectations' remote logo, if any.

    Returns:
        The rewritten HTML; :func:`remote_resources` on it lists what still loads remotely (links
        to documentation are anchors, not resources, and are kept).
    """

    def relative(target: Path) -> str:
        return Path(os.path.relpath(target, page.parent)).as_posix()

    def swap(match: re.Match[str]) -> str:
        url = match.group(1)
        local = _local(url)
        if local is None:
            return match.group(0)
        return match.group(0).replace(url, relative(assets / local))

    text = _REMOTE_RESOURCE.sub(swap, text)
    if logo is not None:
        text = _GE_LOGO.sub(relative(logo), text)
    return text


_TAG = re.compile(r"<(script|link|img)\b[^>]*>", re.IGNORECASE)


def remote_resources(text: str) -> list[str]:
    """The http(s) URLs an HTML page loads: scripts, stylesheets and images (not plain links)."""
    found = []
    for tag in _TAG.finditer(text):
        element = tag.group(0)
        if tag.group(1).lower() == "link" and "stylesheet" not in element:
            continue
        url = re.search(r"""(?:src|href)=["'](https?://[^"']+)""", element)
        if url:
            found.append(url.group(1))
    return found


def copy_assets(dest: Path) -> Path:
    """Copy the vendored tree (without the lock) to ``dest``; returns ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(WEB, dest, ignore=shutil.ignore_patterns(LOCK.name))
    return dest


def plots_template() -> str:
    """DVC's plots page (``{plot_divs}`` placeholder) with Vega, Vega-Lite and Vega-Embed inline.

    Without DVC's ``{scripts}`` placeholder, DVC adds no CDN script tag: the page is whole.
    """
    scripts = "\n".join(
        f"<script>\n{(WEB / path).read_text(encoding='utf-8')}\n</script>"
        for path in _VEGA.values()
    )
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<title>DVC plots (Argosy)</title>\n"
        "<!-- Generated by `python -m argosy.webassets template` from src/argosy/web: -->\n"
        "<!-- Vega, Vega-Lite and Vega-Embed inline, so the page needs no network. -->\n"
        f"{scripts}\n"
        "<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>\n"
        "</head>\n<body>\n<h1>Evaluation plots (test split)</h1>\n{plot_divs}\n</body>\n</html>\n"
    )


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def vendor() -> None:
    """Fetch every pinned package with ``npm pack``, check it, and rewrite ``web/`` and the lock.

    Raises:
        AssetError: npm failed, or a tarball's integrity differs from the one already locked.
    """
    old = _lock()["packages"] if LOCK.exists() else {}
    packages = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in PACKAGES.items():
            try:
                packed = proc.run(["npm", "pack", spec, "--json", "--pack-destination", tmp])
            except proc.CommandError as exc:
                raise AssetError(str(exc)[-600:]) from exc
            tarball = Path(tmp) / json.loads(packed)[0]["filename"]
            integrity = _integrity(tarball)
            if spec in old and old[spec]["integrity"] != integrity:
                raise AssetError(f"{spec}: tarball integrity {integrity} differs from the lock")
            target = WEB / _name(spec)
            shutil.rmtree(target, ignore_errors=True)
            digests = {}
            with tarfile.open(tarball) as archive:
                for rel in files:
                    member = archive.extractfile(f"package/{rel}")
                    if member is None:
                        raise AssetError(f"{spec} has no file {rel}")
                    data = member.read()
                    (target / rel).parent.mkdir(parents=True, exist_ok=True)
                    (target / rel).write_bytes(data)
                    digests[rel] = hashlib.sha256(data).hexdigest()
            packages[spec] = {"integrity": integrity, "files": digests}
    LOCK.write_text(
        json.dumps(
            {"generated_by": "python -m argosy.webassets vendor", "packages": packages},
            indent=2,
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """``vendor`` (fetch, needs npm), ``template ROOT`` (write the DVC template) or ``check``."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["vendor"]:
        vendor()
        return 0
    if args[:1] == ["template"]:
        root = Path(args[1] if len(args) > 1 else ".")
        (root / PLOTS_TEMPLATE).write_text(plots_template(), encoding="utf-8")
        return 0
    if args[:1] == ["check"]:
        problems = verify()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print("usage: python -m argosy.webassets vendor | template [ROOT] | check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
