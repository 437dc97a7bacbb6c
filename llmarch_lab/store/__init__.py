"""The tracking store: the MLflow layer every run logs through (tracking, which re-exports
mlstore, runmeta and queries), its read side for report tables (tables), and the shared tracking
server on PostgreSQL (trackserver, with pgcluster and serverstate)."""
