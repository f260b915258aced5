"""What every ``argosy`` command shares: the error path and the loaders of params and contract.

A command prints ``error: ...`` and exits non-zero through :func:`fail`; an invalid params.yaml or
contract.yaml exits 2 with the message naming each bad key, before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
import typer.core

from argosy.config import DEFAULT_PARAMS, ConfigError, Params, load_params
from argosy.data.contract import DEFAULT_CONTRACT, Contract, ContractError, load_contract

ParamsOption = Annotated[
    Path, typer.Option("--params", help="params.yaml to read (validated before any work).")
]
ContractOption = Annotated[
    Path,
    typer.Option("--contract", help="The data contract to read (validated before any work)."),
]


def _flags_without_a_type() -> None:
    """Show ``--verbose`` in ``--help`` as a flag, not as ``--verbose <bool>``.

    Typer 0.2x prints every option's type in the rich help, flags included, where ``<bool>``
    reads as if the flag took a value. Flags show no type; every other option keeps its own.
    """
    option = getattr(typer.core, "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(original, "_argosy", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    display_type_rich._argosy = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flags_without_a_type()

__all__ = [
    "DEFAULT_CONTRACT",
    "DEFAULT_PARAMS",
    "ContractOption",
    "ParamsOption",
    "contract_or_exit",
    "fail",
    "params_or_exit",
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def params_or_exit(path: Path) -> Params:
    """Load params.yaml or exit 2 with the message naming each bad key."""
    try:
        return load_params(path)
    except ConfigError as exc:
        fail(str(exc), code=2)


def contract_or_exit(path: Path) -> Contract:
    """Load the data contract or exit 2 with the message naming each bad key."""
    try:
        return load_contract(path)
    except ContractError as exc:
        fail(str(exc), code=2)
