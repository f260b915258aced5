"""`--help` of every command group reads as a person expects: flags without a type."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from argosy.cli import app


@pytest.mark.parametrize(
    "command",
    [[], ["validate"], ["train"], ["monitor"], ["promote"], ["registry", "sync"], ["demo"]],
    ids=lambda c: " ".join(c) or "argosy",
)
def test_flags_show_no_type_and_options_keep_theirs(command: list[str]) -> None:
    # When a command's help is printed
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=120)
    # Then it succeeds, lists --help as a plain flag, and never shows `<bool>` for a flag
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output
    if command:
        assert "<path>" in result.output or "<text>" in result.output or "<int" in result.output
