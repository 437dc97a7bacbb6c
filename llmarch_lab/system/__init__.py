"""The system chooser (above the labs): requirements -> candidates from measured runs -> the
recommended system, verified end to end, with its report and deployment bundle.

    llmarch-lab system report experiments/system/support_assistant.yaml --out /tmp/support

Modules: requirements (the YAML), records (components from MLflow), sizing (goodput, replicas,
open loop), chooser (the choice), verify (end-to-end check), bundle_files / bundle (deployment
files / writing + checks), report_pages / report (pages / build + MLflow), render (diagram).
"""
