"""Bank statements: the shared model (model.py), the MT940 and camt.053 parsers, and the integrity checks."""
