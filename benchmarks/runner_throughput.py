"""How close the runner gets to the request rate a model service allows.

A local model service answers every request after a fixed delay D; with C requests in
flight the best possible rate is C / D. For each C the runner evaluates N samples and the
service counts the requests it answered, from the first arrival to the last reply:

    concurrency=C rps=X ideal=Y ratio=Z        (D = 50 ms by default)

So that the service is known not to be the bottleneck, it runs in a process of its own
(the tests' mock model on its fixed answer, far cheaper per request than any client),
reports the CPU it used (server_cpu, in cores), and a minimal raw-socket client is
measured first against it
(`server_check`). At D = 0 the runner is compared with a bare httpx.AsyncClient loop at
the same concurrency against the same service (`overhead_ratio` = runner / bare).

    python benchmarks/runner_throughput.py [--delay-ms 50] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from eval_runner import config, run

CONCURRENCIES = (8, 24, 128)


class Service:
    """The service process, seen from the benchmark."""

    def __init__(self, delay: float) -> None:
        # The tests' mock model service (hack/localkube/mockmodel.py), answering every
        # request with the same completion: its cheapest path.
        hack = str(Path(__file__).resolve().parents[1] / "hack")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([hack, os.environ.get("PYTHONPATH", "")]),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localkube.mockmodel", "--delay", str(delay)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/v1/chat/completions"

    def reset(self) -> None:
        httpx.get(f"{self.base}/reset")
        self.cpu_start = self.cpu_seconds()

    def rate(self) -> tuple[float, float]:
        """Requests per second since the reset, and the service's CPU use in cores."""
        stats = httpx.get(f"{self.base}/stats").json()
        span = stats["last"] - stats["first"]
        cpu = self.cpu_seconds() - self.cpu_start
        return stats["requests"] / span, cpu / span

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


# --- the clients -----------------------------------------------------------------------


def run_runner(url: str, concurrency: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        dataset = Path(folder) / "set.jsonl"
        dataset.write_text(
            "".join(json.dumps({"query": f"q{i}", "answer": "42"}) + "\n" for i in range(samples))
        )
        env = {
            "EVAL_INFERENCE_URL": url,
            "EVAL_MODEL_NAME": "bench",
            "EVAL_DATASET": str(dataset),
            "EVAL_OUTPUT_DIR": str(Path(folder) / "out"),
            "MAX_CONCURRENCY": str(concurrency),
        }
        metrics = asyncio.run(run.run(config.from_env(env), io.StringIO()))
        assert metrics["errors"] == 0 and metrics["exact_match"] == 1.0, metrics


def run_bare_httpx(url: str, concurrency: int, samples: int) -> None:
    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            todo = iter(range(samples))

            async def worker() -> None:
                for i in todo:
                    body = {"model": "bench", "messages": [{"role": "user", "content": f"q{i}"}]}
                    response = await client.post(url, json=body)
                    response.json()

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(main())


def run_raw(url: str, concurrency: int, samples: int) -> None:
    """The least a client can do per request: the service's capacity, not the client's."""
    port = int(url.split(":")[2].split("/")[0])
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )

    async def main() -> None:
        todo = iter(range(samples))

        async def worker() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in todo:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(head.lower().split(b"content-length:")[1].split()[0]))
            writer.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(main())


def measure(
    service: Service, client, concurrency: int, samples: int, repeat: int
) -> tuple[float, float]:
    """The median rate of `repeat` runs (this machine is shared; one run can be unlucky)."""
    rates = []
    for _ in range(repeat):
        service.reset()
        client(service.url, concurrency, samples)
        rates.append(service.rate())
    return statistics.median_low(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=3.0, help="target length of each run")
    parser.add_argument("--samples-at-zero", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per line; the median")
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    service = Service(delay)
    try:
        for c in CONCURRENCIES:
            ideal = c / delay
            n = max(4 * c, int(ideal * args.seconds))
            # The bare httpx loop is only a reference here; its pool is slow at high
            # concurrency, so it gets fewer samples to keep the benchmark short.
            for name, client, samples, repeat in (
                ("server_check ", run_raw, n, args.repeat),
                ("", run_runner, n, args.repeat),
                ("bare_httpx ", run_bare_httpx, max(n // 8, 20 * c), 1),
            ):
                rps, cpu = measure(service, client, c, samples, repeat)
                print(
                    f"{name}delay_ms={args.delay_ms:g} concurrency={c} rps={rps:.1f} "
                    f"ideal={ideal:.1f} ratio={rps / ideal:.3f} samples={samples} "
                    f"server_cpu={cpu:.2f}",
                    flush=True,
                )
    finally:
        service.stop()
    service = Service(0.0)
    try:
        for c in CONCURRENCIES:
            n = args.samples_at_zero
            runner_rps, _ = measure(service, run_runner, c, n, args.repeat)
            bare_rps, _ = measure(service, run_bare_httpx, c, n, args.repeat)
            print(
                f"delay_ms=0 concurrency={c} runner_rps={runner_rps:.1f} "
                f"bare_httpx_rps={bare_rps:.1f} overhead_ratio={runner_rps / bare_rps:.3f} "
                f"samples={n}",
                flush=True,
            )
    finally:
        service.stop()


if __name__ == "__main__":
    main()
