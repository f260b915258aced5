"""The data contract: strict loading with messages naming the key, and the one shared encoder."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from argosy.data.contract import ContractError, load_contract, parse_contract
from argosy.data.encoding import EncodingError, FeatureSpec

from ..conftest import REPO

SMALL = {
    "name": "churn-model",
    "source": "files",
    "id": "row-key",
    "time": None,
    "time_range": None,
    "other_columns": [],
    "label": {"column": "churned", "positive": "yes", "negative": "no"},
    "features": {
        "plan-type": {"type": "categorical", "values": ["basic", "pro"], "nullable": True},
        "region": {"type": "categorical", "values": ["north", "south"], "unseen": "other"},
        "tenure": {"type": "integer", "min": 0, "max": 600},
        "spend": {"type": "numeric", "nullable": True},
        "is-active": {"type": "boolean"},
    },
    "rows": {"min": 10, "max": 1000},
    "label_rate": {"min": 0.05, "max": 0.6},
    "slices": ["plan-type"],
    "metric": {"primary": "pr_auc", "floors": {"pr_auc": 0.3}},
    "monitoring": {
        "min_rows": 100,
        "min_labelled_rows": 100,
        "min_positives": 5,
        "pr_auc_min": 0.3,
        "recall_min": 0.2,
    },
}


@pytest.fixture
def small() -> dict:
    return copy.deepcopy(SMALL)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row-key": ["a", "b", "c", "d"],
            "plan-type": ["pro", None, "basic", "pro"],
            "region": ["south", "east", None, "north"],
            "tenure": [3, 40, 0, 12],
            "spend": [1.5, np.nan, 2.0, 0.0],
            "is-active": [True, False, True, True],
            "churned": ["no", "yes", "no", "yes"],
        }
    )


def test_the_committed_contract_loads() -> None:
    contract = load_contract(REPO / "contract.yaml")
    assert contract.name == "fraud-detector"
    assert contract.raw_columns[-1] == contract.label.column
    assert len(contract.specs) == len(contract.features)


def test_a_second_contract_loads_with_hyphens_and_string_labels(small: dict) -> None:
    contract = parse_contract(small)
    assert contract.feature_names[0] == "plan-type"
    assert contract.time is None
    assert list(contract.labels(frame())) == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda c: c["features"]["tenure"].update(tpye="integer"),
            r"features\.tenure\.tpye: unknown key \(did you mean 'type'\?\)",
        ),
        (lambda c: c["features"]["tenure"].update(type="float"), r"features\.tenure\.type"),
        (lambda c: c["features"]["region"].pop("values"), r"needs its `values` list"),
        (lambda c: c.update(slices=["tenure"]), r"slices: 'tenure' must be categorical or boolean"),
        (lambda c: c.update(slices=["nope"]), r"slices: 'nope' is not a declared feature"),
        (lambda c: c.update(id="tenure"), r"more than one role: \['tenure'\]"),
        (lambda c: c.update(time="ts"), r"time and time_range go together"),
        (lambda c: c.pop("time"), r"time: required; write `time: null` when it does not apply"),
        (lambda c: c["metric"]["floors"].update(accuracy=0.9), r"unknown metric 'accuracy'"),
        (lambda c: c["label"].update(negative="yes"), r"positive and negative must differ"),
        (lambda c: c.update(name="Churn_Model"), r"name: String should match pattern"),
        (
            lambda c: c["features"].update(score={"type": "numeric"}),
            r"reserved for the prediction log",
        ),
    ],
)
def test_invalid_contracts_are_named(small: dict, edit, fragment: str) -> None:
    # Given one mistake in the contract
    edit(small)
    # When / Then loading fails naming the key
    with pytest.raises(ContractError, match=fragment):
        parse_contract(small, Path("contract.yaml"))


def test_missing_file_points_at_init(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="argosy init"):
        load_contract(tmp_path / "contract.yaml")
    (tmp_path / "contract.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(tmp_path / "contract.yaml")


def test_missing_is_nan_for_every_type_and_unseen_goes_to_other(small: dict) -> None:
    # Given a frame with missing values in a nullable categorical and an unseen region
    contract = parse_contract(small)
    matrix = contract.to_matrix(frame())
    # Then missing is NaN (never a -1 code), categories are their index, unseen is "other"
    assert np.isnan(matrix[1, 0])
    assert (matrix[0, 0], matrix[2, 0]) == (1.0, 0.0)
    assert matrix[1, 1] == 2.0  # "east" -> other code, one past the two declared values
    assert np.isnan(matrix[2, 1])
    assert np.isnan(matrix[1, 3])
    assert list(matrix[:, 4]) == [1.0, 0.0, 1.0, 1.0]
    assert not (matrix == -1).any()


def test_the_pandas_and_the_server_encoders_agree(small: dict) -> None:
    # Given the same rows through the vectorised path and the per-value (server) path
    contract = parse_contract(small)
    data = frame()
    vectorised = contract.to_matrix(data)
    per_value = np.stack(
        [spec.encode_values(data[spec.name].tolist()) for spec in contract.specs], axis=1
    )
    # Then they are equal, NaN where NaN
    np.testing.assert_array_equal(vectorised, per_value)


def test_unseen_category_under_reject_names_feature_and_value(small: dict) -> None:
    contract = parse_contract(small)
    bad = frame()
    bad.loc[0, "plan-type"] = "enterprise"
    with pytest.raises(EncodingError, match=r"feature 'plan-type': 'enterprise' is not one of"):
        contract.to_matrix(bad)
    spec = contract.specs[0]
    with pytest.raises(EncodingError, match="enterprise"):
        spec.encode_values(["enterprise"])


def test_dictionary_encoded_columns_encode_as_their_values(small: dict) -> None:
    """Training reads categorical features as pandas categoricals (Parquet dictionaries)."""
    # Given the same rows with the categorical columns as categoricals, in another order and with
    # a category no row uses
    contract = parse_contract(small)
    plain = frame()
    dictionary = plain.copy()
    for name in ("plan-type", "region"):
        values = sorted(plain[name].dropna().unique(), reverse=True)
        dictionary[name] = pd.Categorical(plain[name], categories=[*values, "unused"])
    # Then they encode exactly as the strings do (NaN for missing, unseen to "other")
    np.testing.assert_array_equal(contract.to_matrix(dictionary), contract.to_matrix(plain))
    # And an unseen value under reject is named, as from strings
    dictionary["plan-type"] = pd.Categorical(["pro", None, "enterprise", "pro"])
    with pytest.raises(EncodingError, match=r"feature 'plan-type': 'enterprise' is not one of"):
        contract.to_matrix(dictionary)


def test_specs_round_trip_through_metadata_json_form(small: dict) -> None:
    for spec in parse_contract(small).specs:
        assert FeatureSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec


def test_booleans_accept_words_and_numbers_and_refuse_others() -> None:
    spec = FeatureSpec("flag", type="boolean", nullable=True)
    assert list(spec.encode_values([True, "false", 1, 0.0, None])[:4]) == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(EncodingError, match="is boolean"):
        spec.encode_values([2])
