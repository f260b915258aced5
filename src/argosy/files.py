"""Write files so that a reader sees the old content or the new, never half of either.

Every stage, report and pin goes through here: a crash, a full disk or a refused value mid-way
leaves what was there before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block ends without error.

    For writers that want a file name (Parquet, HTML renderers); the directory is created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8), flushed to disk first."""
    with staged(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())


def write_all(files: Mapping[Path, str | bytes]) -> None:
    """Write several files, in order, each staged before the first replaces its old version.

    A failure while staging changes nothing; put the file readers trust as the commit point last.
    """
    stage: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode() if isinstance(data, str) else data)
            stage.append((Path(tmp), path))
        for tmp, path in stage:
            os.replace(tmp, path)
    finally:
        for tmp, _ in stage:
            tmp.unlink(missing_ok=True)
