"""The LM protocol (llm/lm.py) on a real local model, and the caching wrapper over it. The endpoint
backend is exercised against a real llama.cpp server in test_finetune (endpoint scoring)."""

import numpy as np
import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import models
from llmarch_lab.llm.endpoint import Endpoint
from llmarch_lab.llm.lm import LM, CachedLM, EndpointLM, LocalLM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    model, tok = models.load_causal_lm(models.SMOLLM2)
    return model, tok


def test_local_backend_implements_the_protocol(smol):
    lm = LocalLM(*smol, key="smollm2-135m-instruct@fp32")
    assert isinstance(lm, LM) and isinstance(EndpointLM(Endpoint("http://127.0.0.1:9/v1", "x")), LM)
    c = lm.chat("Say yes.", max_tokens=4)
    assert c.text and 0 < c.output_tokens <= 4 and c.prompt_tokens > 3 and c.seconds > 0
    prompts = [smol[1].apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
               for q in ("Is water wet? Answer yes or no.", "Is fire cold? Answer yes or no.")]
    s = lm.label_logprobs(prompts, ("yes", "no"))
    assert s.values.shape == (2, 2) and s.bounded is None and (s.values < 0).all()
    nll = lm.rolling_nll("The quick brown fox jumps over the lazy dog. " * 4, max_length=16, stride=8)
    assert nll.scored_tokens > 30 and 1 < nll.perplexity < 1e4
    assert lm.embed(["a cat", "a dog"]).shape == (2, 384)


def test_cached_lm_answers_a_repeat_from_disk_and_refuses_unkeyed_weights(smol, tmp_path):
    lm = LocalLM(*smol, key="smollm2-135m-instruct@fp32")
    prompts = ["Q: Is the sky blue?\nA:", "Q: Is grass red?\nA:"]
    first = CachedLM(lm, tmp_path).label_logprobs(prompts, ("yes", "no"))
    again = CachedLM(lm, tmp_path)  # a new wrapper, as a new process would make
    second = again.label_logprobs(prompts, ("yes", "no"))
    assert (again.hits, again.misses) == (1, 0)
    np.testing.assert_array_equal(first.values, second.values)
    other = CachedLM(LocalLM(*smol, key="another-checkpoint"), tmp_path)
    other.label_logprobs(prompts, ("yes", "no"))
    assert other.misses == 1, "another key must not read this key's answers"
    with pytest.raises(LabError, match="LocalLM has no cache key"):
        CachedLM(LocalLM(*smol))


def test_an_endpoint_says_it_has_no_rolling_nll():
    with pytest.raises(LabError, match="returns no prompt log-probs"):
        EndpointLM(Endpoint("http://127.0.0.1:9/v1", "x")).rolling_nll("some text")
