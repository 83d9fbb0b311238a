"""Statistics, summaries and reports over per-request records.

stats and summary are pure functions; render and plots build report.md and PNG plots
from a run directory, and only `render.write_report` writes files.
"""
