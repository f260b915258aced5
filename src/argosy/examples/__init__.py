"""Shipped examples: each is one data contract (the repository's contract.yaml) plus its data."""

from types import ModuleType


def simulator() -> ModuleType:
    """The shipped example's simulator (``SimulationSpec``, ``simulate``, ``simulate_to``, ...).

    Imported on demand: the pipeline needs it only for ``source: simulate`` in the contract.
    """
    from argosy.examples.fraud import simulate

    return simulate
