"""The Dockerfile's ``serve`` target: non-root, read-only-root friendly, model at /mnt/models."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def stage(name: str = "serve") -> str:
    text = DOCKERFILE.read_text()
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)
    assert match, f"no `FROM ... AS {name}` stage"
    return match.group(1)


def test_serve_stage_runs_the_server_as_non_root() -> None:
    stage_text = stage()
    users = re.findall(r"^USER (\S+)", stage_text, re.M)
    assert users, "serve stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["python", "-m", "argosy.serving"]' in stage_text


def test_serve_stage_is_read_only_root_friendly_and_reads_mnt_models() -> None:
    stage_text = stage()
    assert "PYTHONDONTWRITEBYTECODE=1" in stage_text
    assert "ARGOSY_MODEL_DIR=/mnt/models" in stage_text
    assert "ARGOSY_HOST=0.0.0.0" in stage_text
    assert not re.search(r"^(RUN|COPY)\b.*\b(pip|uv) install", stage_text, re.M)  # built elsewhere


def test_serve_build_installs_only_the_serve_extra() -> None:
    build = stage("serve-build")
    assert "--extra serve" in build
    assert "pipeline" not in build
