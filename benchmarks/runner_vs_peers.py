"""The runner's request throughput beside real evaluation frameworks', in one run.

Each client evaluates N samples against the model service of runner_throughput.py (its own
process, answering after a fixed delay D), at concurrency C = 8, 24, 128; the service
measures the rate from the first request's arrival to the last reply, so a framework's
start-up does not count, and counts the requests (all N must come; peak = most in flight):

    client=NAME concurrency=C ratio=R rps=X ideal=C/D ...     (D = 50 ms by default)

The clients: `runner` (in-process; at C >= 32 its second process sends the requests,
EVAL_HTTP_PROCESS=auto), `sender` (a bare loop of the runner's HttpSender on its aiohttp
session: the runner's client layer alone, in one process), `lm-eval` (lm-evaluation-harness
0.4.13's local-chat-completions model, num_concurrent=C), `aiohttp` (a bare aiohttp loop:
lm-eval's client library alone), `evalscope` (evalscope 1.14.1's openai_api evaluation of
a local general_qa set, eval_batch_size=C) and `raw` (a bare asyncio socket loop: the
service's capacity). The frameworks run from cached venvs (installed on first use)
through the drivers in benchmarks/peers/. `--before DIR` adds `runner-before`, the runner
of another revision (its runner-image folder, say from `git worktree add`), in its own
process. The clients take turns, run by run (the median of --repeat runs is printed):
this machine's speed drifts. Then, at D = 0, the rate each reaches, and
d0_rps_vs_lmeval = the runner's best rate over the Cs / lm-eval's best.

    python benchmarks/runner_vs_peers.py [--clients runner,lm-eval] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from runner_throughput import CONCURRENCIES, Service, run_raw, run_runner

from eval_runner import transport
from eval_runner.client import HttpSender, parse_reply
from eval_runner.config import Endpoint

Client = Callable[[str, int, int], None]  # (url, concurrency, samples)
HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eval-operator/venvs"


@dataclass(frozen=True)
class Peer:
    venv: str  # the folder under VENVS, shared with hack/fixtures/*/record.sh
    requirement: str
    entry_point: str  # a script the package installs: the venv is complete
    driver: str


PEERS = {
    "lm-eval": Peer("lm-eval-0.4.13", "lm-eval[api]==0.4.13", "lm_eval", "lm_eval_driver.py"),
    "aiohttp": Peer("lm-eval-0.4.13", "lm-eval[api]==0.4.13", "lm_eval", "aiohttp_driver.py"),
    "evalscope": Peer("evalscope-1.14.1", "evalscope==1.14.1", "evalscope", "evalscope_driver.py"),
}
CLIENTS = ("runner", "sender", "lm-eval", "aiohttp", "evalscope", "raw")


def run_sender(url: str, concurrency: int, samples: int) -> None:
    """The runner's HttpSender on its session, and nothing else of the runner."""

    async def main() -> None:
        http = transport.http_client(concurrency, 60, True, url)
        sender = HttpSender(Endpoint(url), http, 60)
        todo = iter(range(samples))

        async def worker() -> None:
            for i in todo:
                body = {"model": "bench", "messages": [{"role": "user", "content": f"q{i}"}]}
                reply = await sender.send(json.dumps(body).encode())
                assert parse_reply(reply.content, "chat")[0] == "42"

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await sender.aclose()

    asyncio.run(main())


def runner_from(source: Path) -> Client:
    """The runner of another revision (its runner-image folder), in a process of its own."""

    def run(url: str, concurrency: int, samples: int) -> None:
        code = (
            "import sys, runner_throughput as b; b.run_runner(sys.argv[1], *map(int, sys.argv[2:]))"
        )
        path = os.pathsep.join([str(source), str(HERE)])
        subprocess.run(
            [sys.executable, "-c", code, url, str(concurrency), str(samples)],
            env={**os.environ, "PYTHONPATH": path},
            check=True,
        )

    return run


def venv_python(peer: Peer) -> Path:
    venv = VENVS / peer.venv
    if not (venv / "bin" / peer.entry_point).exists():
        print(f"installing {peer.requirement} into {venv}", file=sys.stderr, flush=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin/pip", "install", "-q", peer.requirement], check=True)
    return venv / "bin/python"


def peer_client(peer: Peer) -> Client:
    python = venv_python(peer)
    # Offline: the drivers' data are local, and nothing should wait on a model hub.
    offline = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "MODELSCOPE_OFFLINE")
    env = {**os.environ, **dict.fromkeys(offline, "1")}

    def run(url: str, concurrency: int, samples: int) -> None:
        command = [python, HERE / "peers" / peer.driver, url, str(concurrency), str(samples)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{peer.driver} failed:\n{done.stderr[-4000:]}")

    return run


@dataclass(frozen=True, order=True)
class Rate:
    rps: float
    server_cpu: float
    peak: int


def run_once(service: Service, client: Client, concurrency: int, samples: int) -> Rate:
    service.reset()
    client(service.url, concurrency, samples)
    rps, cpu = service.rate()
    stats = httpx.get(f"{service.base}/stats").json()
    # A client that retried, or skipped samples, would not be measuring the same work.
    assert stats["requests"] == samples, f"{stats['requests']} requests, not {samples}"
    return Rate(rps, cpu, stats["peak"])


def measure(
    service: Service, clients: dict[str, tuple[Client, int]], concurrency: int, samples: int
) -> dict[str, Rate]:
    """Each client's median rate over its runs, the clients taking turns run by run: this
    machine's speed drifts, and turns spread the drift over all of them alike."""
    rates: dict[str, list[Rate]] = {name: [] for name in clients}
    for turn in range(max(repeat for _, repeat in clients.values())):
        for name, (client, repeat) in clients.items():
            if turn < repeat:
                rates[name].append(run_once(service, client, concurrency, samples))
    return {name: statistics.median_low(found) for name, found in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default=",".join(CLIENTS), help="a comma-separated subset")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCIES)))
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=3.0, help="target length of each run")
    parser.add_argument("--samples-at-zero", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per line (the median)")
    parser.add_argument(
        "--evalscope-repeat",
        type=int,
        default=1,
        help="runs per line for evalscope (a run of it takes tens of seconds)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="the runner-image folder of another revision: measured too, as runner-before",
    )
    args = parser.parse_args()
    names = args.clients.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if unknown := set(names) - set(CLIENTS):
        parser.error(f"unknown clients {sorted(unknown)}; known: {', '.join(CLIENTS)}")
    clients: dict[str, tuple[Client, int]] = {}
    for name in names:
        if name in PEERS:
            repeat = args.evalscope_repeat if name == "evalscope" else args.repeat
            clients[name] = (peer_client(PEERS[name]), repeat)
        else:
            local = {"runner": run_runner, "sender": run_sender, "raw": run_raw}
            clients[name] = (local[name], args.repeat)

    if args.before is not None:
        clients = {"runner-before": (runner_from(args.before.resolve()), args.repeat), **clients}

    delay = args.delay_ms / 1000
    service = Service(delay)
    try:
        for c in concurrencies:
            ideal = c / delay
            n = max(4 * c, int(ideal * args.seconds))
            for name, rate in measure(service, clients, c, n).items():
                print(
                    f"client={name} concurrency={c} ratio={rate.rps / ideal:.3f} "
                    f"rps={rate.rps:.1f} ideal={ideal:.1f} samples={n} peak={rate.peak} "
                    f"server_cpu={rate.server_cpu:.2f} delay_ms={args.delay_ms:g}",
                    flush=True,
                )
    finally:
        service.stop()

    best: dict[str, float] = {}
    service = Service(0.0)
    try:
        for c in concurrencies:
            n = max(4 * c, args.samples_at_zero)
            for name, rate in measure(service, clients, c, n).items():
                best[name] = max(best.get(name, 0.0), rate.rps)
                # No peak here: answered at once, a request is never in flight with another.
                print(
                    f"client={name} delay_ms=0 concurrency={c} rps={rate.rps:.1f} samples={n} "
                    f"server_cpu={rate.server_cpu:.2f}",
                    flush=True,
                )
    finally:
        service.stop()
    if "runner" in best and "lm-eval" in best:
        print(f"d0_rps_vs_lmeval={best['runner'] / best['lm-eval']:.3f}")


if __name__ == "__main__":
    main()
