"""What the labs run on: model specs and GGUF assembly, sha256-verified datasets, retrieval
corpora, and the task prompts with their exact scoring."""
