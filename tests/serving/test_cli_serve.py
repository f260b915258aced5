"""`argosy serve` (the Typer CLI) runs the same server as `python -m argosy.serving`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def test_argosy_serve_passes_options_through(model_dir: Path, tmp_path: Path) -> None:
    # Given the argosy script of this environment
    argosy = Path(sys.executable).parent / "argosy"
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(argosy), "serve", "--model-dir", str(model_dir), "--port", "0"],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        # When it starts / Then it listens on loopback and reports ready
        deadline = time.monotonic() + 60
        while "listening on http://127.0.0.1:" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        port = int(log.read_text().split("listening on http://127.0.0.1:")[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["extensions"] is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_argosy_serve_help_is_the_servers() -> None:
    argosy = Path(sys.executable).parent / "argosy"
    out = subprocess.run(
        [str(argosy), "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "--model-sha256" in out.stdout
    assert "--prediction-log" in out.stdout
    # the connection cap is a documented setting with its default and environment variable
    assert "--max-connections" in out.stdout
    assert "ARGOSY_MAX_CONNECTIONS" in out.stdout
