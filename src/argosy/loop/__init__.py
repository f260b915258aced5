"""The loop's orchestration, above the stages: ingest a batch, retrain, promote, the local demo.

Each module joins stages and stores (data, the MLflow registry, git) the way one step of the loop
needs them; the command line calls these, and nothing below imports them.
"""
