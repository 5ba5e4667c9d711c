"""The runner's exceptions, in two families with different consequences.

    RunnerError          the run cannot go on: exit 1 with the message, no metrics.json
    ├── ConfigError      an environment variable is missing or malformed
    ├── DatasetError     the dataset cannot be read, or its rows lack the configured fields
    ├── OutputError      the output folder holds a journal that is not ours to repair
    ├── ModelUnreachable the model service gave no HTTP answer within the wait limit
    └── HttpProcessGone  the second process that sends the model's requests died
    SampleError          one sample failed after its retries: recorded, and the run goes on

Everything raised by aiohttp is turned into one of these at the client's boundary, so the
orchestration never needs to know the HTTP library's exception tree.
"""

from __future__ import annotations


class RunnerError(Exception):
    """The run stops; the message says what to fix."""


class ConfigError(RunnerError):
    pass


class DatasetError(RunnerError):
    pass


class OutputError(RunnerError):
    pass


class ModelUnreachable(RunnerError):
    pass


class HttpProcessGone(RunnerError):
    pass


class SampleError(Exception):
    """One request (to the model or the judge) failed for good; `attempts` made so far."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts
