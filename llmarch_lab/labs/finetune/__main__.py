"""`python -m llmarch_lab.labs.finetune key=value ...`: one fine-tuning run (see lab.main)."""

from llmarch_lab.labs.finetune.lab import main

raise SystemExit(main())
