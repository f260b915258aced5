"""The card-fraud example: a deterministic simulator for the repository's ``contract.yaml``."""
