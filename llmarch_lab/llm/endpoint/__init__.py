"""The served side of the one LLM interface: any OpenAI-compatible endpoint (vLLM, llama.cpp's
server, SGLang, TGI, a hosted API).

    from llmarch_lab.llm.endpoint import Endpoint
    ep = Endpoint("http://127.0.0.1:8000/v1", "smollm2-135m-instruct", api_key_env="MY_KEY")
    ep.preflight()                                   # GET /models: one-line LabError within seconds
    r = ep.chat([{"role": "user", "content": "Hi"}], max_tokens=32)   # r.text, r.output_tokens, ...
    s = await ep.astream_chat(messages, 64, session=sess)  # streaming, every chunk timed (aiohttp)
    async with ep.session(client="wire") as pool:    # http:// only: timed by the kernel (wire.py)
        s = await ep.astream_chat(messages, 64, session=pool)
    lp = ep.completion_logprobs(prompt, top_logprobs=20)   # /completions log-probs (llama.cpp, vLLM)
    ep.label_logprobs(prompt, ["yes", "no"])         # {label: log-prob of its first token | None}
    ep.embeddings(["a text", "another"])             # one vector per text, in input order
    ep.openai_client()                               # AsyncOpenAI on the same fields (for ragas)

The API key lives in an environment variable whose NAME is `api_key_env`; the key is read at
call time, never stored in the object, never logged. Streaming is aiohttp (the load generator's
hot path: it sustained 456 requests/s against the loopback server where httpx sustained 135);
every other call goes through one sync httpx client. Heavy imports stay inside functions.

One module a job: answers.py (Reply, Stream, Logprobs: what the calls return), sse.py (the
streamed answer's SSE events, timed), client.py (Endpoint), wire.py (the socket client: a
stream's clock from the request's write to the kernel's receive time of each chunk, for the
load generator's client="wire"). This package re-exports Endpoint, Reply, Stream and Logprobs.
"""

from llmarch_lab.llm.endpoint.answers import Logprobs, Reply, Stream
from llmarch_lab.llm.endpoint.client import Endpoint

__all__ = ["Endpoint", "Logprobs", "Reply", "Stream"]
