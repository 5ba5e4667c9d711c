"""The model's requests sent from a second process, so that HTTP has a core of its own.

At a high request rate the runner is bound by one core: aiohttp's request handling takes
about half of a sample's CPU, and the runner's own work (parsing, journals, scoring,
progress) the rest. With two cores or more, a child process makes the attempts and this
one does everything else:

    this process: pipeline, retries, parsing  --(request id, body)-->  child: HttpSender
                                               <--(id, Reply | failure)--  (aiohttp)

Frames on the child's stdin and stdout: a 4-byte length, then a pickle (both ends are this
package on the same interpreter). The first frame configures the child: the endpoint (with
its auth header: it travels on a pipe, never in argv or the environment), the pool size,
the timeout and the TLS setting. The child's own stdout is its stderr, so nothing printed
there can corrupt a frame. Closing its stdin ends it (requests in flight are cancelled);
a child that dies ends the run with HttpProcessGone, and no sample is recorded as a
service failure for it.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from eval_runner import transport
from eval_runner.client import HttpSender, Reply, Transient
from eval_runner.config import Endpoint
from eval_runner.errors import HttpProcessGone, SampleError

# Below this many requests in flight one core keeps up (benchmarks/runner_vs_peers.py:
# 0.91 of the ideal rate and more at 8 and 24), and a second process would only cost its
# start-up.
MIN_CONCURRENCY: Final = 32
STOP_SECONDS: Final = 5.0  # how long a child may take to end after its stdin closes

_REPLY, _TRANSIENT, _FINAL, _BUG = range(4)
# The child finds this package where this process did, after anything on its own path.
_ROOT = str(Path(__file__).resolve().parent.parent)
_CHILD = f"import sys; sys.path.append({_ROOT!r}); import eval_runner.http_process as h; h.main()"

Message = tuple[Any, ...]


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> float:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 CPU limit (a
    container's resources.limits.cpu)."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = cpu_max.read_text().split()
        limit = float("inf") if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return cpus
    return min(cpus, limit)


def worth_it(concurrency: int, cpus: Callable[[], float] | None = None) -> bool:
    """EVAL_HTTP_PROCESS=auto: many requests in flight, and a second core to run them on."""
    return concurrency >= MIN_CONCURRENCY and (cpus or usable_cpus)() >= 2


def frame(message: Message) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


class Frames:
    """Messages out of a byte stream that arrives in pieces of any size."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self.buffer += data
        messages = []
        start = 0
        while len(self.buffer) - start >= 4:
            end = start + 4 + int.from_bytes(self.buffer[start : start + 4], "big")
            if len(self.buffer) < end:
                break
            messages.append(pickle.loads(self.buffer[start + 4 : end]))
            start = end
        del self.buffer[:start]
        return messages


# --- this process's side -----------------------------------------------------------------


class _ChildWatch(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.frames = Frames()
        self.pending: dict[int, asyncio.Future[Message]] = {}
        self.gone: HttpProcessGone | None = None
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        for message in self.frames.feed(data):
            future = self.pending.pop(message[0], None)
            if future is not None and not future.done():  # else: its caller gave up
                future.set_result(message)

    def process_exited(self) -> None:
        assert self.transport is not None
        self.gone = HttpProcessGone(
            f"the runner's HTTP process exited with code {self.transport.get_returncode()}; "
            "its messages are above. EVAL_HTTP_PROCESS=false sends the requests from the "
            "runner's own process"
        )
        for future in self.pending.values():
            if not future.done():
                future.set_exception(self.gone)
        self.pending.clear()
        self.exited.set_result(None)


class ProcessSender:
    """A Sender whose attempts run in a child process (see the module's docstring)."""

    def __init__(self, child: asyncio.SubprocessTransport, watch: _ChildWatch) -> None:
        self.child = child
        self.watch = watch
        stdin = child.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        self.stdin = stdin
        self.loop = asyncio.get_running_loop()
        self.next_id = 0

    @classmethod
    async def start(
        cls, endpoint: Endpoint, size: int, timeout: float, verify: bool | str
    ) -> ProcessSender:
        loop = asyncio.get_running_loop()
        child, watch = await loop.subprocess_exec(
            _ChildWatch,
            sys.executable,
            "-c",
            _CHILD,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the child's messages go where this process's go
        )
        sender = cls(child, watch)
        sender.stdin.write(frame((endpoint, size, timeout, verify)))
        return sender

    async def send(self, content: bytes) -> Reply:
        if self.watch.gone is not None:
            raise self.watch.gone
        self.next_id += 1
        key = self.next_id
        future: asyncio.Future[Message] = self.loop.create_future()
        self.watch.pending[key] = future
        self.stdin.write(frame((key, content)))
        try:
            _, kind, first, second, third = await future
        finally:
            self.watch.pending.pop(key, None)  # a cancelled caller's answer is dropped
        if kind == _REPLY:
            return Reply(first, second, third)
        if kind == _TRANSIENT:
            raise Transient(first, second)
        if kind == _FINAL:
            raise SampleError(first)
        raise HttpProcessGone(f"the runner's HTTP process failed: {first}")

    async def aclose(self) -> None:
        """End the child: close its stdin, wait for it, kill it if it lingers."""
        if not self.stdin.is_closing():
            self.stdin.close()
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await asyncio.shield(self.watch.exited)
        except TimeoutError:
            self.child.kill()
            await self.watch.exited
        finally:
            self.child.close()


# --- the child's side ----------------------------------------------------------------------


class _Requests(asyncio.Protocol):
    """The child's stdin: the configuration frame, then one frame per request."""

    def __init__(self, on_request: Callable[[Message], None]) -> None:
        self.frames = Frames()
        loop = asyncio.get_running_loop()
        self.config: asyncio.Future[Message] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_request = on_request

    def data_received(self, data: bytes) -> None:
        for message in self.frames.feed(data):
            if not self.config.done():
                self.config.set_result(message)
            else:
                self.on_request(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.config.done():
            self.config.set_exception(EOFError("no configuration frame"))
        self.closed.set_result(None)


async def serve(requests_in: Any, replies_out: Any) -> None:
    """The child's loop: answer each request frame until stdin closes."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    # Requests may come in the configuration's own read, before the sender exists.
    ready: asyncio.Future[HttpSender] = loop.create_future()
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, replies_out)

    async def answer(key: int, content: bytes) -> None:
        sender = await ready  # at once, once it is set
        try:
            reply = await sender.send(content)
            message: Message = (key, _REPLY, reply.status, reply.content, reply.retry_after)
        except Transient as e:
            message = (key, _TRANSIENT, str(e), e.delay, None)
        except SampleError as e:
            message = (key, _FINAL, str(e), None, None)
        except Exception as e:  # a bug here must stop the run, not pass for a failed sample
            message = (key, _BUG, f"{type(e).__name__}: {e}", None, None)
        out.write(frame(message))

    def on_request(message: Message) -> None:
        task = loop.create_task(answer(*message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    requests = _Requests(on_request)
    await loop.connect_read_pipe(lambda: requests, requests_in)
    endpoint, size, timeout, verify = await requests.config
    http = transport.http_client(size, timeout, verify, endpoint.url)
    ready.set_result(HttpSender(endpoint, http, timeout))
    try:
        await requests.closed
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()
        out.close()


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent handles it and closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # a stray print goes to stderr, never into a frame
    asyncio.run(serve(os.fdopen(0, "rb", buffering=0), replies_out))


if __name__ == "__main__":
    main()
