"""Synthetic transactions, the feature contract and the train/valid/test split."""
