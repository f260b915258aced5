"""params.yaml is validated on load: unknown keys and wrong types fail, naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from argosy.config import ConfigError, load_params, parse_params


@pytest.fixture
def raw(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_committed_params_load(repo_root: Path) -> None:
    # Given the committed params.yaml / When loaded / Then every section is typed
    params = load_params(repo_root / "params.yaml")
    assert params.train.model_name == "fraud-detector"
    assert params.train.device in {"auto", "cpu", "cuda"}
    assert params.gate.primary_metric == "pr_auc"


def test_unknown_key_is_named(raw: dict) -> None:
    # Given a typo in a stage section
    bad = copy.deepcopy(raw)
    bad["train"]["n_estimater"] = 10
    # When / Then validation fails naming the dotted key
    with pytest.raises(ConfigError, match=r"train\.n_estimater: unknown key"):
        parse_params(bad)


def test_unknown_section_is_named(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["trian"] = {}
    with pytest.raises(ConfigError, match=r"trian: unknown key"):
        parse_params(bad)


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("train", "max_depth", "six", "train.max_depth"),
        ("train", "device", "tpu", "train.device"),
        ("prepare", "valid_fraction", 1.5, "prepare.valid_fraction"),
        ("validate", "min_rows", -1, "validate.min_rows"),
        ("gate", "max_regression", "0.01", "gate.max_regression"),
    ],
)
def test_wrong_type_or_range_is_named(
    raw: dict, section: str, key: str, value: object, fragment: str
) -> None:
    bad = copy.deepcopy(raw)
    bad[section][key] = value
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        parse_params(bad)


def test_cross_field_rules(raw: dict) -> None:
    # Given label-rate bounds in the wrong order
    bad = copy.deepcopy(raw)
    bad["validate"]["label_rate_min"], bad["validate"]["label_rate_max"] = 0.5, 0.1
    with pytest.raises(ConfigError, match="label_rate_min must be below label_rate_max"):
        parse_params(bad)


def test_unknown_floor_metric(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["gate"]["floors"]["accuracy"] = 0.9
    with pytest.raises(ConfigError, match="unknown metric 'accuracy'"):
        parse_params(bad)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
