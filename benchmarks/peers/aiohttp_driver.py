"""Sends N chat requests with a bare aiohttp loop: the client library under lm-eval's path.

Run with the lm-eval venv's python (aiohttp comes with lm-eval[api]):
`python aiohttp_driver.py URL CONCURRENCY SAMPLES`. C workers share one ClientSession
whose connector holds C connections, and each reads its reply's JSON; nothing else.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp


async def main(url: str, concurrency: int, samples: int) -> None:
    todo = iter(range(samples))
    answers = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal answers
        for i in todo:
            body = {"model": "bench", "messages": [{"role": "user", "content": f"q{i}"}]}
            async with session.post(url, json=body) as response:
                reply = await response.json()
            answers += reply["choices"][0]["message"]["content"] == "42"

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    assert answers == samples, answers
    print(f"answers={answers}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
