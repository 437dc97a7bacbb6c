"""python -m llmarch_lab.cli ARGS: the same as `llmarch-lab ARGS`."""

from llmarch_lab.cli.main import console_main

console_main()
