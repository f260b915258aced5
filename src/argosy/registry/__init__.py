"""MLflow model registry: versions, provenance tags, and aliases that follow the overlays."""
