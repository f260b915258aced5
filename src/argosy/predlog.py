"""The prediction log's format: what the model server writes and the drift monitor reads.

Layout: ``<root>/date=YYYY-MM-DD/part-<UTC timestamp>-<uuid>.parquet`` where ``root`` is a
local directory or any fsspec URI (``s3://bucket/predictions``, ``memory://...``). Hive-style
``date=`` partitions let a reader prune by day; files are written whole (a temporary name renamed
into place on local disks, a single PUT on object stores) and temporary names start with ``.``,
which Parquet dataset readers skip, so a reader never sees half a file.

Columns, in order (``prediction_log_columns(features)`` returns the list):

=================  ========================  ==============================================
column             Arrow type                meaning
=================  ========================  ==============================================
``request_id``     string                    the V2 request id (client's or server-assigned)
``timestamp``      timestamp[us, tz=UTC]     when the server answered the request
``model_name``     string                    ``metadata.json`` name
``model_version``  string                    the served (pinned) version; "" if unregistered
``row_id``         string, nullable          the request's optional id tensor (named after
                                             ``metadata.json`` ``id_column``), one per row
one per feature    float32                   named exactly as ``metadata.json`` ``features``;
                                             the encoded model input (category and boolean
                                             codes, NaN for missing)
``score``          float32                   probability of the positive class
``decision``       int8                      1 when score >= threshold, else 0
=================  ========================  ==============================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PREDICTION_LOG_ID_COLUMNS = (
    "request_id",
    "timestamp",
    "model_name",
    "model_version",
    "row_id",
)
PREDICTION_LOG_OUTPUT_COLUMNS = ("score", "decision")
PARTITION_KEY = "date"


def prediction_log_columns(features: Sequence[str]) -> list[str]:
    """The prediction log's column names, in file order, for a model's feature list."""
    return [*PREDICTION_LOG_ID_COLUMNS, *features, *PREDICTION_LOG_OUTPUT_COLUMNS]


def prediction_log_schema(features: Sequence[str]) -> Any:
    """The Arrow schema of the prediction log (imports pyarrow, so call it off the hot path).

    Args:
        features: Ordered feature names from ``metadata.json``.

    Returns:
        A ``pyarrow.Schema``.
    """
    import pyarrow as pa

    fields = [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("row_id", pa.string(), nullable=True),
        *(pa.field(f, pa.float32()) for f in features),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("decision", pa.int8(), nullable=False),
    ]
    return pa.schema(fields)
