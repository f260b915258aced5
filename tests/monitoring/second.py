"""A second, small data contract unlike the example, and rows drawn from it.

It differs from the example where the monitor could have assumed the example: no event time, an id
named ``row-key``, a label ``churned`` with the string values ``yes``/``no`` (about 25% positive),
hyphenated feature names, and nullable features (a categorical among them) whose missing values
are NaN in the reference and in the log alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from argosy.data.contract import Contract, parse_contract

PLANS = ("basic", "plus", "pro")


def second_doc(id_column: str | None = "row-key", min_rows: int = 2_000) -> dict[str, Any]:
    """The contract as contract.yaml would hold it."""
    doc: dict[str, Any] = {
        "name": "churn-model",
        "description": "a second contract for the monitoring tests",
        "source": "files",
        "label": {"column": "churned", "positive": "yes", "negative": "no"},
        "features": {
            "tenure-months": {"type": "integer", "min": 0, "max": 600},
            "monthly-charge": {"type": "numeric", "nullable": True, "min": 0, "max": 1000},
            "plan": {"type": "categorical", "nullable": True, "values": list(PLANS)},
            "region": {"type": "categorical", "values": ["north", "south"], "unseen": "other"},
            "paperless": {"type": "boolean"},
        },
        "other_columns": ["signup-source"],
        "time": None,
        "time_range": None,
        "slices": [],
        "rows": {"min": 100, "max": 10_000_000},
        "label_rate": {"min": 0.05, "max": 0.5},
        "metric": {"primary": "pr_auc", "floors": {"pr_auc": 0.3}},
        "monitoring": {
            "min_rows": min_rows,
            "min_labelled_rows": 500,
            "min_positives": 20,
            "pr_auc_min": 0.4,
            "recall_min": 0.3,
        },
    }
    doc["id"] = id_column
    return doc


def second_contract(id_column: str | None = "row-key", min_rows: int = 2_000) -> Contract:
    """The second contract, validated like contract.yaml."""
    return parse_contract(second_doc(id_column, min_rows))


def second_rows(n: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    """Raw rows of the second contract: nulls in ``plan`` and ``monthly-charge``, 25% "yes".

    Returns:
        The raw columns, plus ``score`` (a noisy, informative probability of "yes").
    """
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 120, n)
    charge = rng.gamma(4.0, 20.0, n).clip(0, 1000)
    charge[rng.random(n) < 0.1] = np.nan
    plan = rng.choice(np.array(PLANS, dtype=object), n, p=[0.5, 0.3, 0.2])
    plan[rng.random(n) < 0.2] = None
    region = rng.choice(np.array(["north", "south"], dtype=object), n)
    paperless = rng.random(n) < 0.6
    logit = -1.6 + 1.4 * (tenure < 12) + 0.6 * (plan == "basic") + rng.normal(0, 0.6, n)
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    score = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, n))))
    return pd.DataFrame(
        {
            "row-key": np.arange(first_id, first_id + n, dtype=np.int64),
            "signup-source": rng.choice(np.array(["web", "store"], dtype=object), n),
            "tenure-months": tenure,
            "monthly-charge": charge,
            "plan": plan,
            "region": region,
            "paperless": paperless,
            "churned": np.where(churned, "yes", "no").astype(object),
            "score": score,
        }
    )
