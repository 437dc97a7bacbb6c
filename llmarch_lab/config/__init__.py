"""Parameters models, notebooks and suites.

One pydantic model per notebook (a subclass of `LabParams`) is the single source of truth for a
lab's parameters: the notebook's `parameters` cell, `experiments/*.yaml` and the CLI are all
validated against it, and unknown keys are errors. A notebook names its model in its metadata:

    {"metadata": {"llmarch_lab": {"params": "llmarch_lab.labs.quickstart.lab:QuickstartParams"}}}

A suite (`experiments/NAME.yaml`) lists runs; a `grid` expands to the cartesian product:

    suite: quickstart                 # optional, defaults to the file name
    description: what this suite answers
    runs:
      - name: fp32-vs-nf4
        notebook: 10_quantization     # a file in notebooks/ (with or without .ipynb)
        params: {max_tokens: 512}
        grid: {quant: [fp32, nf4]}    # two runs

Every problem is reported as one line naming the file, line and field (`LabError`). Every input
is bounded before the work it feeds (file size, string length, YAML depth and expanded size,
names of printable characters, runs): the LIMITS block of llmarch_lab/common/yamlmodel.py."""

from llmarch_lab.config.notebooks import (
    notebook_fingerprint,
    notebook_params_class,
    notebooks_dir,
    parameters_cell,
    read_notebook,
    resolve_notebook,
)
from llmarch_lab.config.params import (
    Device,
    Dtype,
    EmbedderFields,
    EmbedderSpec,
    EndpointFields,
    LabParams,
    LLMFields,
    ModelSpec,
    validate_params,
)
from llmarch_lab.config.suites import (
    ENTRY_KEYS,
    MAX_RUNS,
    NOT_SUITES,
    SUITE_KEYS,
    ExecutorSpec,
    RunSpec,
    Suite,
    load_suite,
    suite_files,
)

__all__ = ['Device', 'Dtype', 'ENTRY_KEYS', 'EmbedderFields', 'EmbedderSpec', 'EndpointFields', 'ExecutorSpec', 'LLMFields', 'LabParams', 'MAX_RUNS', 'ModelSpec', 'NOT_SUITES', 'RunSpec', 'SUITE_KEYS', 'Suite', 'load_suite', 'notebook_fingerprint', 'notebook_params_class', 'notebooks_dir', 'parameters_cell', 'read_notebook', 'resolve_notebook', 'suite_files', 'validate_params']
