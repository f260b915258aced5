"""The data gate: a Great Expectations suite built from the feature schema and params."""
