"""Throwaway signing material, made in each test session; the serving tests' model and server."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..serving.conftest import model_dir, spawned
from .keys import KeyPair, make_certificates, make_key

__all__ = ["ca", "key", "model_dir", "other_key", "spawned"]


@pytest.fixture(scope="session")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A P-256 key pair written as PEM files (never committed: generated here)."""
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A second key pair: an attacker's."""
    return make_key(tmp_path_factory.mktemp("other-key"))


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA and a code-signing leaf certificate issued by it."""
    return make_certificates(tmp_path_factory.mktemp("ca"))
