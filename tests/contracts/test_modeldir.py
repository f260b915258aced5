"""The model directory (argosy.modeldir): metadata.json written and read one way, hashes checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from argosy.data.encoding import FeatureSpec
from argosy.modeldir import (
    METADATA_FILE,
    MODEL_FILE,
    Metadata,
    ModelDirError,
    check_onnx,
    read_metadata,
    write_metadata,
)

META = Metadata(
    name="income-classifier",
    features=["age", "workclass"],
    specs=[
        FeatureSpec(name="age", minimum=0.0),
        FeatureSpec(name="workclass", type="categorical", categories=("private", "state")),
    ],
    threshold=0.42,
    sha256="ab" * 32,
    id_column="row_id",
    data_hash="d" * 32 + ".dir",
    device="cpu",
    engine="local",
    best_iteration=17,
    xgboost_version="3.2.0",
)


def test_metadata_reads_back_as_written_and_holds_no_run_facts(tmp_path: Path) -> None:
    # Given metadata written the way training writes it
    path = write_metadata(tmp_path, META)
    # Then it reads back equal, with every feature's encoder
    assert read_metadata(tmp_path) == META
    # And it holds only what data, params and code determine: no run id, commit or time, so
    # equal inputs give equal bytes (DVC's hash of models/ does not change on a rerun)
    doc = json.loads(path.read_text())
    assert not {"mlflow_run_id", "mlflow_model_uri", "git_commit", "created"} & set(doc)


def test_unknown_keys_are_ignored_and_missing_specs_default_to_numeric(tmp_path: Path) -> None:
    doc = {"name": "m", "features": ["a"], "threshold": 0.5, "sha256": "AB" * 32, "later": 1}
    (tmp_path / METADATA_FILE).write_text(json.dumps(doc))
    meta = read_metadata(tmp_path)
    assert meta.specs == [FeatureSpec(name="a")]
    assert meta.sha256 == "ab" * 32  # hashes compare lowercase


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "missing from the model directory"),
        ("{not json", "not readable as JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"name": "m", "features": ["a", "a"], "threshold": 0.5, "sha256": "x"}', "twice"),
        ('{"name": "m", "features": ["a"], "threshold": "NaN", "sha256": "x"}', "finite"),
        ('{"name": "m", "features": ["a"], "sha256": "x"}', "threshold"),
        (
            '{"name": "m", "features": ["a"], "threshold": 0.5, "sha256": "x", "id_column": "a"}',
            "is also a feature",
        ),
    ],
)
def test_invalid_metadata_is_refused_with_the_reason(
    tmp_path: Path, text: str | None, needle: str
) -> None:
    if text is not None:
        (tmp_path / METADATA_FILE).write_text(text)
    with pytest.raises(ModelDirError, match=needle):
        read_metadata(tmp_path)


def test_an_altered_model_file_is_refused(tmp_path: Path) -> None:
    import hashlib

    (tmp_path / MODEL_FILE).write_bytes(b"onnx bytes")
    good = hashlib.sha256(b"onnx bytes").hexdigest()
    assert check_onnx(tmp_path, good.upper()) == good
    (tmp_path / MODEL_FILE).write_bytes(b"onnx bytes, altered")
    with pytest.raises(ModelDirError, match="does not match the pinned"):
        check_onnx(tmp_path, good)
    (tmp_path / MODEL_FILE).unlink()
    with pytest.raises(ModelDirError, match="missing from the model directory"):
        check_onnx(tmp_path, good)
