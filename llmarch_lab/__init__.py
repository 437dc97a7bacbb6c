"""llmarch-lab: a lab bench for LLM system architects.

Heavy backends (torch, transformers, mlflow) are imported inside the functions that need them,
so `import llmarch_lab` and the CLI start fast.
"""

__version__ = "0.1.0"


class LabError(Exception):
    """A user-facing error: its message is one line naming the file, field, model or URL at fault.

    The CLI prints it as `error: <message>` and exits with status 2, with no traceback.
    """
