"""The system chooser (above the labs): requirements -> candidates from measured runs -> the
recommended system, verified end to end, with its report and deployment bundle.

    llmarch-lab system report experiments/system/support_assistant.yaml --out /tmp/support

Modules: requirements (the YAML), chooser (components, sizing, choice), verify (end-to-end
check), bundle (deployment files + validation), report (HTML/Markdown, MLflow).
"""
