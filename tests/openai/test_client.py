"""The official `openai` Python client against a running `ouro-edge serve`.

What an application written for OpenAI gets from the daemon: the same
answers streamed or not, stop sequences, seeds, token counts, and every
refusal as the client's own typed exception.

The daemon must be started with an API key, `--max-concurrent 1` and
`--max-queue 0` (the rate-limit case relies on it), and a small model
(the tests run with SmolLM2-135M alone, no cloud). tests/tests/openai_client.rs
does all of that; to run by hand:

    OURO_BASE_URL=http://127.0.0.1:8080/v1 OURO_API_KEY=... python tests/openai/test_client.py -v

Environment:
    OURO_BASE_URL  the API's base URL, ending in /v1
    OURO_API_KEY   a key the daemon accepts
"""

import os
import sys
import time
import unittest

import openai
from openai import OpenAI

BASE_URL = os.environ.get("OURO_BASE_URL", "")
API_KEY = os.environ.get("OURO_API_KEY", "")
# A prompt the model continues at length, so that `max_tokens` (not the end
# of sequence) ends it and a generation can be caught mid-way.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
CHAT = [{"role": "user", "content": "Write the numbers from 1 to 50, separated by commas."}]


def client(**overrides):
    # No retries: a refusal must reach the test, not be retried away.
    options = dict(base_url=BASE_URL, api_key=API_KEY, max_retries=0, timeout=120.0)
    options.update(overrides)
    return OpenAI(**options)


class OpenAIClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = client()
        cls.model = cls.client.models.list().data[0].id

    # -- answers -------------------------------------------------------------

    def chat(self, stream=False, **params):
        params.setdefault("max_tokens", 24)
        params.setdefault("messages", CHAT)
        response = self.client.chat.completions.create(model=self.model, stream=stream, **params)
        if not stream:
            choice = response.choices[0]
            self.assertEqual(choice.message.role, "assistant")
            return choice.message.content, choice.finish_reason, response.usage
        text, finish, usage = "", None, None
        for chunk in response:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
        return text, finish, usage

    def complete(self, stream=False, **params):
        params.setdefault("max_tokens", 24)
        params.setdefault("prompt", COUNTING)
        response = self.client.completions.create(model=self.model, stream=stream, **params)
        if not stream:
            return response.choices[0].text, response.choices[0].finish_reason, response.usage
        text, finish, usage = "", None, None
        for chunk in response:
            self.assertEqual(chunk.object, "text_completion")
            if chunk.choices:
                text += chunk.choices[0].text
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
        return text, finish, usage

    def test_models_lists_the_served_model_and_the_alias(self):
        self.assertTrue(self.model)
        self.assertEqual(self.client.models.retrieve("ouro").id, self.model)

    def test_chat_answers_with_the_openai_shape(self):
        response = self.client.chat.completions.create(model="ouro", messages=CHAT, max_tokens=16)
        self.assertEqual(response.object, "chat.completion")
        self.assertEqual(response.model, self.model)
        self.assertEqual(len(response.choices), 1)
        self.assertTrue(response.choices[0].message.content)
        self.assertIn(response.choices[0].finish_reason, ("stop", "length"))
        usage = response.usage
        self.assertGreater(usage.prompt_tokens, 0)
        self.assertTrue(0 < usage.completion_tokens <= 16, usage)
        self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)

    def test_greedy_streamed_chat_equals_the_unstreamed_answer(self):
        whole = self.chat()
        streamed = self.chat(stream=True)
        self.assertTrue(whole[0])
        self.assertEqual(streamed, whole)

    def test_greedy_streamed_completion_equals_the_unstreamed_answer(self):
        whole = self.complete()
        streamed = self.complete(stream=True)
        self.assertTrue(whole[0])
        self.assertEqual(streamed, whole)

    def test_max_tokens_ends_with_length_and_exact_usage(self):
        for stream in (False, True):
            text, finish, usage = self.complete(stream=stream, max_tokens=5)
            self.assertEqual(finish, "length", text)
            self.assertEqual(usage.completion_tokens, 5)
            self.assertEqual(usage.total_tokens, usage.prompt_tokens + 5)
        # One more token of prompt is one more prompt token.
        longer = self.complete(max_tokens=1, prompt=COUNTING + " 9,")[2]
        self.assertGreater(longer.prompt_tokens, usage.prompt_tokens)

    def test_token_id_prompts_are_accepted(self):
        text, finish, usage = self.complete(prompt=[16, 28, 17, 28, 18, 28], max_tokens=4)
        self.assertEqual(finish, "length")
        self.assertGreaterEqual(usage.prompt_tokens, 6)

    def test_stop_sequences_cut_before_the_match(self):
        full, _, _ = self.complete(max_tokens=32)
        # A stop that first appears part-way through the greedy text.
        start = len(full) // 2
        stop = full[start:start + 3]
        self.assertTrue(stop.strip(), f"no usable stop in {full!r}")
        expected = full[: full.find(stop)]
        for stream in (False, True):
            text, finish, usage = self.complete(stream=stream, max_tokens=32, stop=[stop, "never-appears"])
            self.assertEqual(finish, "stop", (stop, text))
            self.assertEqual(text, expected, f"stop {stop!r}")
            self.assertNotIn(stop, text)
            self.assertLess(usage.completion_tokens, 32)

        full_chat, _, _ = self.chat(max_tokens=32)
        start = len(full_chat) // 2
        stop = full_chat[start:start + 2]
        self.assertTrue(stop.strip(), f"no usable stop in {full_chat!r}")
        for stream in (False, True):
            text, finish, _ = self.chat(stream=stream, max_tokens=32, stop=stop)
            self.assertEqual(finish, "stop")
            self.assertEqual(text, full_chat[: full_chat.find(stop)])

    def test_a_seed_repeats_a_sampled_answer(self):
        params = dict(temperature=1.0, top_p=0.95, seed=1234, max_tokens=24, prompt="Once upon a time")
        first = self.complete(**params)
        self.assertEqual(self.complete(**params), first)
        self.assertEqual(self.complete(stream=True, **params), first)

    # -- refusals ------------------------------------------------------------

    def test_an_unknown_model_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            self.client.chat.completions.create(model="gpt-4o", messages=CHAT)
        self.assertEqual(caught.exception.code, "model_not_found")
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="gpt-4o", prompt="x", stream=True)

    def test_bad_parameters_are_bad_requests_naming_the_field(self):
        cases = [
            ("temperature", dict(temperature=5)),
            ("n", dict(n=2)),
            ("tools", dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])),
            ("logprobs", dict(logprobs=True)),
            ("stop", dict(stop=["a", "b", "c", "d", "e"])),
            ("max_tokens", dict(max_tokens=10**9)),
        ]
        for param, extra in cases:
            extra.setdefault("max_tokens", 8)
            with self.subTest(param=param):
                with self.assertRaises(openai.BadRequestError) as caught:
                    self.client.chat.completions.create(model=self.model, messages=CHAT, **extra)
                error = caught.exception
                expected = "messages" if param == "max_tokens" else param
                self.assertEqual(error.param, expected, error.message)
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.completions.create(model=self.model, prompt=[2**40])
        self.assertEqual(caught.exception.param, "prompt")
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.completions.create(model=self.model, prompt=["one", "two"])
        self.assertEqual(caught.exception.param, "prompt")
        # The body's shape, checked before the model: named in JSON terms.
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": 5}])
        self.assertEqual(caught.exception.param, "messages[0].content")
        self.assertNotIn("untagged", caught.exception.message)

    def test_a_wrong_api_key_is_an_authentication_error(self):
        with self.assertRaises(openai.AuthenticationError) as caught:
            client(api_key="sk-wrong").chat.completions.create(model=self.model, messages=CHAT)
        self.assertEqual(caught.exception.code, "invalid_api_key")
        with self.assertRaises(openai.AuthenticationError):
            client(api_key="sk-wrong").models.list()

    def test_a_foreign_host_is_refused(self):
        rebound = client(default_headers={"Host": "attacker.example"})
        with self.assertRaises(openai.PermissionDeniedError) as caught:
            rebound.models.list()
        self.assertEqual(caught.exception.code, "host_not_allowed")

    def test_an_oversized_body_is_a_413(self):
        huge = [{"role": "user", "content": "x" * (2 << 20)}]
        with self.assertRaises(openai.APIStatusError) as caught:
            self.client.chat.completions.create(model=self.model, messages=huge, max_tokens=1)
        self.assertEqual(caught.exception.status_code, 413)

    def test_over_admission_is_a_rate_limit_error_and_the_slot_frees(self):
        # The daemon runs one generation and queues none: while a stream is
        # open, any other generation is refused at once.
        held = self.client.completions.create(model=self.model, prompt=COUNTING, max_tokens=400, stream=True)
        try:
            with self.assertRaises(openai.RateLimitError) as caught:
                self.client.chat.completions.create(model=self.model, messages=CHAT, max_tokens=4)
            error = caught.exception
            self.assertEqual(error.code, "rate_limit_exceeded")
            self.assertEqual(error.response.headers.get("retry-after"), "1")
            with self.assertRaises(openai.RateLimitError):
                self.client.completions.create(model=self.model, prompt="x", max_tokens=4, stream=True)
            # Proof the refusals came while the held generation was running.
            first = next(iter(held))
            self.assertIsNone(first.choices[0].finish_reason, "the held generation had ended already")
        finally:
            held.close()
        # Leaving frees the slot, as soon as the daemon notices.
        deadline = time.monotonic() + 30
        while True:
            try:
                text, _, _ = self.complete(max_tokens=2)
                break
            except openai.RateLimitError:
                self.assertLess(time.monotonic(), deadline, "the slot was never freed")
                time.sleep(0.2)
        self.assertTrue(text)


def main():
    if not BASE_URL or not API_KEY:
        sys.exit("set OURO_BASE_URL (…/v1) and OURO_API_KEY: see the docstring")
    print(f"openai {openai.__version__} against {BASE_URL}", file=sys.stderr)
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
