"""Statistics and summaries over per-request records (pure functions, no I/O but reading records)."""
