"""The cost lab's parts, one a module: each its own params model (`XxxParams`, `part: "xxx"`) and `run`."""
