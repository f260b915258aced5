"""Vendored web assets: files match their lock, pages are rewritten to them, the DVC template."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from argosy import webassets

REPO = Path(__file__).resolve().parents[2]


def test_every_vendored_file_matches_the_lock() -> None:
    assert webassets.verify() == []


def test_a_changed_or_missing_vendored_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a copy of the vendored tree with one byte flipped and one file gone
    copy = tmp_path / "web"
    shutil.copytree(webassets.WEB, copy)
    monkeypatch.setattr(webassets, "WEB", copy)
    monkeypatch.setattr(webassets, "LOCK", copy / "assets.lock.json")
    jquery = copy / "jquery/dist/jquery.min.js"
    data = bytearray(jquery.read_bytes())
    data[100] ^= 1
    jquery.write_bytes(bytes(data))
    (copy / "vega/build/vega.min.js").unlink()
    # Then both are named, with what to do
    problems = webassets.verify()
    assert any("jquery.min.js: sha256 differs" in p for p in problems)
    assert any("vega.min.js: missing (run `make web-assets`)" in p for p in problems)


def test_the_committed_dvc_plots_template_is_what_the_assets_make() -> None:
    committed = (REPO / webassets.PLOTS_TEMPLATE).read_text(encoding="utf-8")
    assert committed == webassets.plots_template(), "stale: run `make web-assets`"
    assert "{plot_divs}" in committed
    assert "{scripts}" not in committed  # so DVC adds no CDN script tag
    assert webassets.remote_resources(committed) == []
    assert "html_template = plots-offline.html" in (REPO / ".dvc/config").read_text()


def test_localize_points_cdn_urls_at_the_copy_and_reports_unknown_ones(tmp_path: Path) -> None:
    # Given a page two levels below the assets, loading CDN files and one unknown script
    assets = webassets.copy_assets(tmp_path / "static" / "vendor")
    page = tmp_path / "a" / "b" / "page.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/'
        'bootstrap.min.css">'
        '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
        '<script src="https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/'
        'bootstrap-table-filter-control.css"></script>'
        '<script src="https://example.org/unknown.js"></script>'
        '<a href="https://docs.example.org">docs</a>'
    )
    # When localized
    text = webassets.localize(page.read_text(), page, assets)
    left = webassets.remote_resources(text)
    # Then known files load from the copy by relative path, the unknown one is reported,
    # and plain links stay
    assert 'href="../../static/vendor/bootstrap/dist/css/bootstrap.min.css"' in text
    assert 'src="../../static/vendor/vega/build/vega.min.js"' in text
    assert "filter-control/bootstrap-table-filter-control.min.css" in text
    assert left == ["https://example.org/unknown.js"]
    assert 'href="https://docs.example.org"' in text
