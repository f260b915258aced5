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
    assert params.train.device in {"auto", "cpu", "cuda"}
    assert params.gate.max_regression >= 0.0


def test_unknown_key_is_named(raw: dict) -> None:
    # Given a typo in a stage section
    bad = copy.deepcopy(raw)
    bad["train"]["n_estimater"] = 10
    # When / Then validation fails naming the dotted key
    with pytest.raises(
        ConfigError, match=r"train\.n_estimater: unknown key \(did you mean 'n_estimators'\?\)"
    ):
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
        ("monitor", "drift_share", 1.5, "monitor.drift_share"),
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
    # Given split fractions that leave too little to train on
    bad = copy.deepcopy(raw)
    bad["prepare"]["valid_fraction"], bad["prepare"]["test_fraction"] = 0.5, 0.45
    with pytest.raises(ConfigError, match="must leave at least 10% to train on"):
        parse_params(bad)


@pytest.mark.parametrize("section", ["validate", "contract"])
def test_data_knobs_live_in_the_contract_not_params(raw: dict, section: str) -> None:
    # Given a params.yaml that still carries a data-dependent section
    bad = copy.deepcopy(raw)
    bad[section] = {"min_rows": 10}
    # When / Then it is refused as unknown (the contract owns it)
    with pytest.raises(ConfigError, match=rf"{section}: unknown key"):
        parse_params(bad)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_a_rule_across_keys_names_the_rule_not_the_whole_section(raw: dict) -> None:
    # Given a cross-key mistake in a large section
    bad = copy.deepcopy(raw)
    bad["prepare"]["valid_fraction"], bad["prepare"]["test_fraction"] = 0.5, 0.45
    # When / Then the message is one short line per problem, without the section's contents
    with pytest.raises(ConfigError) as caught:
        parse_params(bad)
    assert all(len(line) < 200 for line in str(caught.value).splitlines())
    assert "reference_rows" not in str(caught.value)
