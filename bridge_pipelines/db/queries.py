"""Named statements from sql/queries/*.sql files: sections start with a line `-- name: <name>`."""

from __future__ import annotations

import re
from functools import cache

from bridge_pipelines.paths import load_query

_SECTION = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def named_statements(file_name: str) -> dict[str, str]:
    text = load_query(file_name)
    parts = _SECTION.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def statement(file_name: str, name: str) -> str:
    try:
        return named_statements(file_name)[name]
    except KeyError:
        raise KeyError(f"sql/queries/{file_name}.sql has no section '-- name: {name}'") from None
