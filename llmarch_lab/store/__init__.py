"""The tracking store: the MLflow layer every run logs through (tracking), its read side for
report tables (tables), and the shared tracking server on PostgreSQL (trackserver)."""
