"""Dynamic partitions: one per disbursement envelope, one per statement file."""

import dagster as dg

envelope_partitions = dg.DynamicPartitionsDefinition(name="envelope")
statement_partitions = dg.DynamicPartitionsDefinition(name="statement")
