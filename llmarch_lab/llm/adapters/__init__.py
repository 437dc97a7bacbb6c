"""OpenAI-compatible front ends for engines that ship a batching scheduler but no server.

OpenVINO GenAI (its ContinuousBatchingPipeline) and CTranslate2 (its Generator) are libraries:
no maintained OpenAI-compatible server for either installs offline here (OpenVINO Model Server is
a container and a binary release, not on PyPI; `openvino-openai-api` 0.1.1 has had no release
since 2025-03 and runs one request at a time). So the lab serves them through a thin adapter:

    openai_http.py       the HTTP side (aiohttp): /v1/chat/completions (streaming or not),
                         /v1/models, /health, Prometheus /metrics (prometheus-client)
    openvino_backend.py  OpenVINO GenAI: add_request() + step(), the library's own
                         continuous-batching scheduler (SchedulerConfig)
    ct2_backend.py       CTranslate2: generate_batch() with a per-token callback; CTranslate2
                         has no continuous batching, so requests that wait while a batch runs
                         go together into the next batch (static batching)

These modules run inside each engine's own environment (.engines/openvino, .engines/ctranslate2,
made by `make engine-openvino` / `make engine-ctranslate2`), started by llm/engines.py as
`python -m llmarch_lab.llm.adapters.openai_http --backend ...` with the repo on PYTHONPATH.
They import only the standard library, aiohttp, prometheus-client and the engine's library;
nothing else of the lab.
"""
