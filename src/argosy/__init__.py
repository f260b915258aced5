"""Argosy: a GitOps MLOps template."""

__version__ = "0.1.0"
