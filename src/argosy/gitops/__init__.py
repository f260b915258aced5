"""Git as the source of truth: overlay pins, promotion, rollback."""
