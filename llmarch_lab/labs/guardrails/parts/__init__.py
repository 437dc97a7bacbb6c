"""The guardrails lab's parts, one a module: each its own params model (`XxxParams`, `part: "xxx"`),
its report columns (`REPORT`) and `run`."""
