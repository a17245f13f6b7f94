"""JSON objects given on the command line (``--expert-options``, ``--train-options``, ``--core-options``).

One parser, so every command refuses bad JSON and a non-object the same
way, naming the option, instead of a bare ``json`` or ``TypeError`` message.
"""

from __future__ import annotations

import json
from typing import Any


def json_object(text: str, option: str | None = None) -> dict[str, Any]:
    """The JSON object in ``text``; ``ValueError`` (prefixed with ``option`` when given) for anything else."""
    prefix = f"{option}: " if option else ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{prefix}not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{prefix}expected a JSON object of named fields, {{...}}, got {text!r}")
    return value
