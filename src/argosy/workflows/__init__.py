"""Argo Workflows definitions built from dvc.yaml and params.yaml, and the in-cluster task runner.

The top-level ``workflows/`` modules are thin: each calls one builder here. Nothing runs at import.
"""
