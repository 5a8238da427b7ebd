"""Operator reports: daily reconciliation per program, statement completeness."""
