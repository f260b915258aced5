"""The Makefile as `make help` shows it: every target phony and explained, once."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = (Path(__file__).resolve().parents[2] / "Makefile").read_text()


def test_one_phony_list_names_every_target_and_each_target_has_its_help() -> None:
    phony = re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", MAKEFILE, re.M)
    assert len(phony) == 1
    declared = phony[0].replace("\\\n", " ").split()
    targets = re.findall(r"^([a-zA-Z0-9_-]+):", MAKEFILE, re.M)
    assert sorted(declared) == sorted(targets)
    helpless = [t for t in targets if not re.search(rf"^{re.escape(t)}:.*## \S", MAKEFILE, re.M)]
    assert helpless == []


def test_no_comment_looks_like_a_help_line() -> None:
    # `make help` reads `target: ... ## text`; a `## ...` line of its own is never shown
    assert re.findall(r"^##", MAKEFILE, re.M) == []
