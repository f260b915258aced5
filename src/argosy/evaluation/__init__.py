"""Metrics for an imbalanced problem, and the champion/challenger gate."""
