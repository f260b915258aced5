"""Strict YAML settings files (params.yaml, contract.yaml): read a mapping, name each bad key.

One reader and one message format for both files: an unknown key suggests the closest known one,
a wrong value shows at most 80 characters of what was given, and a rule across keys shows its own
message, never the whole section it was checked on.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


def read_mapping(path: Path, error: type[Exception], missing_hint: str) -> object:
    """The parsed YAML document of ``path``.

    Raises:
        error: The file is missing (the message ends with ``missing_hint``) or not YAML.
    """
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such file ({missing_hint})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def known_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at ``loc`` below ``root``: walk the models, skipping mapping keys."""
    model: Any = root
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            continue  # a key of a mapping such as `features`: its value's model is already set
        candidates = getattr(field.annotation, "__args__", (field.annotation,))
        model = next((a for a in candidates if hasattr(a, "model_fields")), None)
        if model is None:
            return []
    return list(model.model_fields)


def describe(
    error: ValidationError,
    title: str,
    root: type[BaseModel],
    missing: Callable[[str], str] | None = None,
) -> str:
    """One line per problem under ``title``, each naming the dotted key.

    Args:
        error: What pydantic found.
        title: The first line (``<file>: invalid ...``).
        root: The model the document was validated against (for "did you mean").
        missing: How to explain a missing top-level key, by name (default: "field required").
    """
    lines = [title]
    for item in error.errors():
        loc = item["loc"]
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "missing" and len(loc) == 1 and missing is not None:
            lines.append(f"  {key}: {missing(key)}")
        elif item["type"] == "extra_forbidden":
            known = known_keys(root, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            lines.append(
                f"  {key}: unknown key"
                + (f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(known)})")
            )
        elif isinstance(item.get("input"), dict):  # a rule across keys: the message says which
            lines.append(f"  {key}: {item['msg'].removeprefix('Value error, ')}")
        else:
            got = repr(item.get("input"))
            shown = got if len(got) <= 80 else got[:77] + "..."
            lines.append(f"  {key}: {item['msg']} (got {shown})")
    return "\n".join(lines)
