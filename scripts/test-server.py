#!/usr/bin/env python3
"""`tritlab serve` driven by the official OpenAI Python client.

Run by scripts/test-server.sh, which starts the server on the default model with the 2B-4T chat
template, the gay-tracer plugin and an API key. Usage:
test-server.py URL API_KEY TRITLAB_BINARY CHAT_TEMPLATE

Streams a completion and a chat completion (greedy, and seeded sampling) and compares the text
and the tracer's colours with what `tritlab generate` / `tritlab chat` print for the same prompt
and settings; then the client's view of errors (auth, unknown model, bad values) and a few
requests at once. Ends with 'N passed, N failed'; exits non-zero if anything failed.
"""

import concurrent.futures
import json
import subprocess
import sys
import time
import traceback

import openai

URL, KEY, TRITLAB, TEMPLATE = sys.argv[1:5]
client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=120)
results = {"passed": 0, "failed": 0}


def check(name):
    def run(test):
        started = time.monotonic()
        try:
            test()
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            results["failed"] += 1
            print(f"FAIL {name} ({time.monotonic() - started:.1f} s)")
            traceback.print_exc()
        else:
            results["passed"] += 1
            print(f"ok   {name} ({time.monotonic() - started:.1f} s)")
        return test

    return run


def cli(*args):
    """The trace `tritlab generate|chat ... --json` prints: [(text, colour)] per token."""
    out = subprocess.run(
        [TRITLAB, *args, "--json"], check=True, capture_output=True, text=True
    ).stdout
    trace = next(o["value"] for o in json.loads(out) if o["kind"] == "trace")
    # The trace shows a token that completes no text yet as "·".
    return [("" if t["text"] == "·" else t["text"], t["rgb"]) for t in trace["tokens"]]


def streamed(chunks):
    """[(text, colour)] per token of a stream, and its finish reason."""
    tokens, finish = [], None
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        text = choice.text if hasattr(choice, "text") else (choice.delta.content or "")
        extension = (chunk.model_extra or {}).get("tritlab")
        if extension is not None:
            tokens.append((text, extension.get("color")))
        elif text:
            tokens.append((text, None))
        finish = choice.finish_reason or finish
    return tokens, finish


def same(got, want):
    assert want and any(t for t, _ in want), f"the CLI generated nothing: {want}"
    got_text = "".join(t for t, _ in got)
    want_text = "".join(t for t, _ in want)
    assert got_text == want_text, f"server {got_text!r}\ncli    {want_text!r}"
    got_colours = [c for _, c in got if c is not None]
    want_colours = [c for _, c in want]
    assert got_colours == want_colours, f"server {got_colours}\ncli    {want_colours}"


PROMPT = "To be, or not to be"
MESSAGE = "Who art thou, and whence comest thou?"


@check("models")
def _():
    models = [m.id for m in client.models.list()]
    assert models == ["default"], models


@check("streamed completion, greedy == tritlab generate --greedy (text and colours)")
def _():
    stream = client.completions.create(
        model="default", prompt=PROMPT, max_tokens=32, temperature=0, seed=1069, stream=True
    )
    got, finish = streamed(stream)
    same(got, cli("generate", PROMPT, "--greedy", "--max-tokens", "32"))
    assert finish in ("length", "stop"), finish


@check("streamed completion, seeded == tritlab generate --seed (temperature, top-k, top-p)")
def _():
    stream = client.completions.create(
        model="default",
        prompt=PROMPT,
        max_tokens=32,
        temperature=0.8,
        top_p=0.9,
        seed=7,
        stream=True,
        extra_body={"top_k": 40},
    )
    got, _ = streamed(stream)
    want = cli(
        "generate", PROMPT, "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40",
        "--seed", "7", "--max-tokens", "32",
    )
    same(got, want)


@check("streamed chat completion, greedy == tritlab chat --greedy --template")
def _():
    stream = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": MESSAGE}],
        max_tokens=32,
        temperature=0,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    got, _ = streamed(chunks)
    same(got, cli("chat", MESSAGE, "--greedy", "--max-tokens", "32", "--template", TEMPLATE))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(got)


@check("chat completion with a system message, whole")
def _():
    reply = client.chat.completions.create(
        model="default",
        messages=[
            {"role": "system", "content": "Speak plainly."},
            {"role": "user", "content": MESSAGE},
        ],
        max_tokens=24,
        temperature=0,
    )
    want = cli(
        "chat", MESSAGE, "--system", "Speak plainly.", "--greedy", "--max-tokens", "24",
        "--template", TEMPLATE,
    )
    assert reply.choices[0].message.content == "".join(t for t, _ in want)
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@check("logprobs through the client")
def _():
    reply = client.completions.create(
        model="default", prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2
    )
    lp = reply.choices[0].logprobs
    assert len(lp.token_logprobs) == reply.usage.completion_tokens
    assert all(v <= 0 for v in lp.token_logprobs)
    chat = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    content = chat.choices[0].logprobs.content
    assert content and all(len(c.top_logprobs) == 3 for c in content)


@check("errors: a wrong key, an unknown model, bad values")
def _():
    wrong = openai.OpenAI(base_url=URL + "/v1", api_key="wrong", max_retries=0)
    try:
        wrong.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401
    try:
        client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.body["param"] == "model", e.body
    try:
        client.completions.create(model="default", prompt="x", temperature=7)
        raise AssertionError("temperature 7 was accepted")
    except openai.BadRequestError as e:
        assert e.body["param"] == "temperature", e.body
    try:
        client.chat.completions.create(model="default", messages=[], max_tokens=2)
        raise AssertionError("no messages were accepted")
    except openai.BadRequestError as e:
        assert e.body["param"] == "messages", e.body


@check("eight streams at once answer what each answers alone")
def _():
    prompts = [f"{PROMPT} {i}" for i in range(8)]

    def run(prompt):
        stream = client.completions.create(
            model="default", prompt=prompt, max_tokens=24, temperature=0, stream=True
        )
        return "".join(t for t, _ in streamed(stream)[0])

    alone = [run(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(run, prompts))
    assert together == alone


print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
