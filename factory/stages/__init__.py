"""Pipeline stages: one module per stage, each with a frozen config section and a callable class
used by Ray Data ``map_batches`` (see docs/ARCHITECTURE.md for the column contract)."""
