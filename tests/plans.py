"""The plans PostgreSQL really ran (auto_explain with ANALYZE), for tests that check how much work a statement does
rather than how long it takes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def executed_plans(db: psycopg.Connection, statements_containing: str = "") -> Iterator[list[dict]]:
    """Within the block, the plan (auto_explain's JSON "Plan") of every statement on `db`, nested statements included,
    or of those whose text contains `statements_containing`."""
    plans: list[dict] = []

    def collect(notice: psycopg.errors.Diagnostic) -> None:
        text = notice.message_primary or ""
        if text.startswith("duration:") and "{" in text:
            explained = json.loads(text[text.index("{"):])
            if statements_containing in explained.get("Query Text", ""):
                plans.append(explained["Plan"])

    db.execute("LOAD 'auto_explain'")
    db.add_notice_handler(collect)
    for setting in ("log_min_duration = 0", "log_analyze = on", "log_timing = off", "log_format = json",
                    "log_nested_statements = on", "log_level = notice"):
        db.execute(f"SET auto_explain.{setting}")
    try:
        yield plans
    finally:
        db.execute("SET auto_explain.log_min_duration = -1")
        db.remove_notice_handler(collect)


def plan_nodes(node: dict) -> Iterator[dict]:
    """The node and every node under it."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)
