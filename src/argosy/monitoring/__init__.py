"""Drift monitoring on the server's prediction log, label feedback and the retraining trigger."""
