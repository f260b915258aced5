"""The data contract and its encoder, the data source, the split, `argosy init`, synthetic data."""
