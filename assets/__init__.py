"""Asset definitions and asset checks: thin wiring around bridge_pipelines' core."""
