#!/usr/bin/env python3
"""Aggregate generation throughput of a running `tritlab serve` at several concurrencies.

Usage: bench-server.py URL [--tokens N] [--requests R] [--concurrency 1,4,8] [--key KEY]

For each concurrency C, R requests (default 8) of N tokens each (`ignore_eos`, so every request
generates exactly N) are streamed by C client threads at once (C = 1: one after another, the
sequential baseline); aggregate tokens/s is all generated tokens over the wall time. Also prints
the median time to first token. Standard library only (http.client), so the client costs little
next to the server. Prints a Markdown table.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def stream(url, key, prompt, tokens):
    """Streams one completion; returns (generated tokens, seconds to the first one)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({
        "prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
        "stream": True,
    })
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    started = time.monotonic()
    conn.request("POST", "/v1/completions", body, headers)
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{response.status}: {response.read()[:300]!r}")
    count, first = 0, None
    for line in response:
        if line.startswith(b"data: {") and b'"finish_reason":null' in line:
            count += 1
            if first is None:
                first = time.monotonic() - started
        elif line.startswith(b"data: [DONE]"):
            break
        elif line.startswith(b"data: {") and b'"error"' in line:
            raise RuntimeError(line.decode())
    conn.close()
    return count, first


def run(url, key, concurrency, requests, tokens):
    prompts = [f"To be, or not to be, {i}" for i in range(requests)]
    results, errors = [], []
    lock = threading.Lock()

    def worker(mine):
        for p in mine:
            try:
                r = stream(url, key, p, tokens)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(e)
                return
            with lock:
                results.append(r)

    threads = [
        threading.Thread(target=worker, args=(prompts[i::concurrency],))
        for i in range(concurrency)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    if errors:
        raise errors[0]
    generated = sum(n for n, _ in results)
    return generated, wall, statistics.median(f for _, f in results)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--key", default="")
    a = p.parse_args()
    # Warm-up: the first request pays for page faults of the weights.
    stream(a.url, a.key, "warm up", 4)
    rows, base = [], None
    for c in [int(x) for x in a.concurrency.split(",")]:
        generated, wall, ttft = run(a.url, a.key, c, a.requests, a.tokens)
        rate = generated / wall
        base = base or rate
        rows.append((c, generated, wall, rate, rate / base, ttft))
    print("| concurrent streams | tokens | wall s | aggregate tokens/s | vs sequential | median TTFT s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c, n, wall, rate, ratio, ttft in rows:
        print(f"| {c} | {n} | {wall:.2f} | {rate:.1f} | {ratio:.2f}× | {ttft:.3f} |")


if __name__ == "__main__":
    main()
