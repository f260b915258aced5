"""The feature contract shared by simulation, validation, training and serving.

Raw data carries identifiers, a timestamp and the label beside the model features. Categorical
features are strings in the data and reach the model as the index of the value in its category list,
so the ONNX model sees one FP32 matrix whose column order is ``FEATURES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Feature:
    """One model feature.

    Attributes:
        name: Column name in the data and tensor name in V2 requests.
        minimum: Smallest valid value (numeric features).
        maximum: Largest valid value (numeric features).
        allow_nan: Whether a missing value is legitimate (the model handles NaN natively).
        categories: The allowed values of a categorical feature, in code order.
        integer: Whether the values are whole numbers (counts and flags).
    """

    name: str
    minimum: float | None = None
    maximum: float | None = None
    allow_nan: bool = False
    categories: tuple[str, ...] | None = None
    integer: bool = False

    @property
    def categorical(self) -> bool:
        """Whether the feature is a categorical (string) column."""
        return self.categories is not None

    def spec(self) -> dict[str, Any]:
        """The JSON description written into metadata.json for the server and clients."""
        return {
            "name": self.name,
            "allow_nan": self.allow_nan,
            "categories": list(self.categories) if self.categories else None,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }


CURRENCIES = ("USD", "EUR", "GBP", "CAD", "MXN", "JPY")
MERCHANT_CATEGORIES = (
    "grocery",
    "restaurants",
    "fuel",
    "fashion",
    "electronics",
    "jewelry",
    "travel",
    "digital_goods",
    "gaming",
    "pharmacy",
)
CHANNELS = ("pos", "ecommerce", "mobile_app", "moto")
ENTRY_MODES = ("chip", "contactless", "magstripe", "manual", "ecommerce", "tokenized")
DEVICE_TYPES = ("none", "desktop", "mobile", "tablet")

_FLAG = {"minimum": 0.0, "maximum": 1.0, "integer": True}
_COUNT = {"minimum": 0.0, "maximum": 10_000.0, "integer": True}

NUMERIC_FEATURES: tuple[Feature, ...] = (
    Feature("amount_usd", 0.01, 100_000.0),
    Feature("amount_to_avg_ratio", 0.0, 100_000.0),
    Feature("customer_avg_amount_30d", 0.01, 100_000.0),
    Feature("customer_txn_count_1h", **_COUNT),
    Feature("customer_txn_count_24h", **_COUNT),
    Feature("customer_txn_count_7d", **_COUNT),
    Feature("customer_amount_sum_24h", 0.0, 10_000_000.0),
    Feature("customer_distinct_merchants_24h", **_COUNT),
    Feature("customer_chargebacks_365d", **_COUNT),
    Feature("seconds_since_last_txn", 0.0, 400 * 86_400.0, allow_nan=True),
    Feature("account_age_days", 0.0, 36_500.0, integer=True),
    Feature("card_age_days", 0.0, 36_500.0, integer=True),
    Feature("hour_of_day", 0.0, 23.0, integer=True),
    Feature("day_of_week", 0.0, 6.0, integer=True),
    Feature("merchant_risk_score", 0.0, 1.0),
    Feature("merchant_age_days", 0.0, 36_500.0, integer=True),
    Feature("distance_from_home_km", 0.0, 20_100.0, allow_nan=True),
    Feature("ip_country_mismatch", **_FLAG),
    Feature("billing_shipping_mismatch", **_FLAG),
    Feature("cvv_match", **_FLAG),
    Feature("device_age_days", 0.0, 36_500.0, allow_nan=True, integer=True),
    Feature("new_device", **_FLAG),
    Feature("failed_logins_24h", **_COUNT),
    Feature("email_domain_risk", 0.0, 1.0),
    Feature("is_foreign_currency", **_FLAG),
    Feature("is_international", **_FLAG),
)

CATEGORICAL_FEATURES: tuple[Feature, ...] = (
    Feature("currency", categories=CURRENCIES),
    Feature("merchant_category", categories=MERCHANT_CATEGORIES),
    Feature("channel", categories=CHANNELS),
    Feature("entry_mode", categories=ENTRY_MODES),
    Feature("device_type", categories=DEVICE_TYPES),
)

MODEL_FEATURES: tuple[Feature, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
FEATURES: tuple[str, ...] = tuple(f.name for f in MODEL_FEATURES)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in MODEL_FEATURES}

ID_COLUMN = "transaction_id"
TIMESTAMP_COLUMN = "timestamp"
LABEL_COLUMN = "is_fraud"
#: Columns that are not model features: identifiers, the local-currency amount and the label.
ID_COLUMNS = ("transaction_id", "customer_id", "merchant_id")
RAW_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "timestamp",
    "customer_id",
    "merchant_id",
    "amount",
    *FEATURES,
    "is_fraud",
)
#: Slices reported by evaluation and guarded by the gate.
SLICE_COLUMNS = ("channel", "merchant_category")


def to_matrix(frame: Any) -> np.ndarray:
    """Encode a data frame's model features as the FP32 matrix the ONNX model expects.

    Args:
        frame: A pandas DataFrame holding every column in ``FEATURES``.

    Returns:
        An ``[N, len(FEATURES)]`` float32 array; categories become their code, unknown values -1.
    """
    out = np.empty((len(frame), len(FEATURES)), dtype=np.float32)
    for i, feature in enumerate(MODEL_FEATURES):
        column = frame[feature.name]
        if feature.categories is not None:
            codes = {value: code for code, value in enumerate(feature.categories)}
            out[:, i] = column.map(codes).fillna(-1).to_numpy(dtype=np.float32)
        else:
            out[:, i] = column.to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def feature_specs() -> list[dict[str, Any]]:
    """Describe every model feature, in input order, for metadata.json."""
    return [f.spec() for f in MODEL_FEATURES]
