"""The least API work a client can do for the scale benchmark's runs: its fair baseline.

For each EvalTask it sees, per model, one run after another, and per run exactly: create
its EvalRun, create its Job (owned by the EvalRun), and when the Job completes read the
collector's termination message from the pod's watch event, write the EvalRun's status,
write the EvalTask's status (its compact runs[] entries, progress and phase), and start the
chain's next run. The objects are the operator's own (its pure builders: spec.parse_spec,
records.build_evalrun, manifests.build_job, records.status_patch), so the API server
stores and serves the same bytes; what the baseline leaves out is everything else the
operator does (conditions, events, leaderboard, dry runs, progress reads, adoption,
retries).

Watches (list, then watch from the list's resourceVersion): EvalTasks, and the Jobs and
pods the operator's label selects. The EvalTask's status writes are serialised per
EvalTask, each carrying everything known by then (a write that waited for another is sent
once for all the runs that finished meanwhile), so a slower write never undoes a later one.
Parallelism as the operator's: DEFAULT_WORKERS writers at once, twice as many connections.

    python benchmarks/baseline_client.py --kubeconfig FILE   (operator_scale.py starts it)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml

from eval_operator import constants, manifests, naming, records, spec, status
from eval_operator.statustypes import Phase, RunState
from eval_runner import results

AGENT: Final = "eval-baseline/1"
RUNNER_IMAGE: Final = "eval-operator/runner:dev"  # as operator_scale.py starts the operator
SELECTOR: Final = f"{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY}"
API: Final = f"/apis/{constants.GROUP}/{constants.VERSION}"
JSON: Final = {"Content-Type": "application/json"}
MERGE: Final = {"Content-Type": "application/merge-patch+json"}


@dataclass
class Task:
    """One EvalTask: its parsed spec, and what the baseline knows of its runs."""

    owner: records.Owner
    evalspec: spec.EvalTaskSpec
    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    status_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status_sent: int = 0  # how many entry changes the last status write carried
    changes: int = 0

    @property
    def total(self) -> int:
        return len(self.evalspec.models) * len(self.evalspec.tasks)


@dataclass(frozen=True)
class Run:
    task: Task
    model: int  # index into spec.models
    index: int  # index into spec.tasks
    name: str


class Baseline:
    def __init__(self, http: aiohttp.ClientSession, server: str) -> None:
        self.http = http
        self.server = server
        self.tasks: dict[str, Task] = {}  # EvalTask uid -> Task
        self.runs: dict[tuple[str, str], Run] = {}  # (namespace, Job name) -> Run
        self.collector: dict[tuple[str, str], str] = {}  # (namespace, Job name) -> message
        self.completed: set[tuple[str, str]] = set()  # Jobs seen Complete, not yet recorded
        self.recorded: set[tuple[str, str]] = set()
        self.slots = asyncio.Semaphore(constants.DEFAULT_WORKERS)
        self.work: set[asyncio.Task[None]] = set()
        # The first error ends the process: a baseline that skips work measures nothing.
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- the API --------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any, headers: Any = JSON) -> Any:
        async with (
            self.slots,
            self.http.request(
                method, self.server + path, data=json.dumps(body), headers=headers
            ) as answer,
        ):
            if answer.status >= 400:
                raise RuntimeError(f"{method} {path}: {answer.status} {await answer.text()}")
            return await answer.json()

    async def watch(self, path: str, on: Any) -> None:
        """List, then watch from there; on a cut-off watch, list again."""
        while True:
            async with self.http.get(self.server + path) as answer:
                answer.raise_for_status()
                listed = await answer.json()
            for item in listed["items"]:
                on("ADDED", item)
            params = {"watch": "true", "resourceVersion": listed["metadata"]["resourceVersion"]}
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with self.http.get(self.server + path, params=params, timeout=timeout) as w:
                async for line in w.content:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    on(event["type"], event["object"])

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.work.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.work.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and not self.failed.done():
            self.failed.set_exception(error)

    # --- the flow -------------------------------------------------------------------

    def on_evaltask(self, kind: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        if kind != "ADDED" or meta["uid"] in self.tasks:
            return
        owner = records.Owner(constants.EVALTASK.kind, meta["name"], meta["namespace"], meta["uid"])
        task = Task(owner, spec.parse_spec(body.get("spec")))
        self.tasks[owner.uid] = task
        for model in range(len(task.evalspec.models)):
            self.spawn(self.start(task, model, 0))

    async def start(self, task: Task, model: int, index: int) -> None:
        evalspec, owner = task.evalspec, task.owner
        service, config = evalspec.models[model], evalspec.tasks[index]
        fp = naming.fingerprint(evalspec, service, config)
        name = naming.job_name(owner.name, service.name, config.name, fp)
        run = Run(task, model, index, name)
        self.runs[(owner.namespace, name)] = run
        body = records.build_evalrun(owner, name, service.name, config.name, fp)
        created = await self.call("POST", f"{API}/namespaces/{owner.namespace}/evalruns", body)
        run_owner = records.Owner(
            constants.EVALRUN.kind, name, owner.namespace, created["metadata"]["uid"]
        )
        job = manifests.build_job(owner, run_owner, evalspec, service, config, RUNNER_IMAGE)
        await self.call("POST", f"/apis/batch/v1/namespaces/{owner.namespace}/jobs", job)

    def on_job(self, kind: str, job: dict[str, Any]) -> None:
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
            key = (job["metadata"]["namespace"], job["metadata"]["name"])
            if key not in self.recorded:
                self.completed.add(key)
                self.ready(key)

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        job = (pod["metadata"].get("labels") or {}).get("job-name")
        if not job or (pod.get("status") or {}).get("phase") != "Succeeded":
            return
        for state in pod["status"].get("containerStatuses") or []:
            if state["name"] == constants.COLLECTOR_CONTAINER:
                message = ((state.get("state") or {}).get("terminated") or {}).get("message")
                key = (pod["metadata"]["namespace"], job)
                self.collector[key] = message or ""
                self.ready(key)

    def ready(self, key: tuple[str, str]) -> None:
        """A run is recorded once its Job is Complete and its pod's message is known."""
        if key in self.completed and key in self.collector and key in self.runs:
            self.completed.discard(key)
            self.recorded.add(key)
            self.spawn(self.record(self.runs[key], self.collector.pop(key)))

    async def record(self, run: Run, message: str) -> None:
        task = run.task
        config = task.evalspec.tasks[run.index]
        stamp = status.timestamp(datetime.now(UTC))
        record = records.Record(
            state=RunState.SUCCEEDED,
            job=run.name,
            attempts=1,
            start_time=stamp,
            completion_time=stamp,
            metrics=tuple(results.decode(message).items()),
        ).with_score(config)
        ns = task.owner.namespace
        await self.call(
            "PATCH",
            f"{API}/namespaces/{ns}/evalruns/{run.name}/status",
            {"status": records.status_patch(record)},
            MERGE,
        )
        model = task.evalspec.models[run.model].name
        task.entries[(model, config.name)] = records.entry(model, config.name, record)
        task.changes += 1
        nxt = run.index + 1
        if nxt < len(task.evalspec.tasks):
            self.spawn(self.start(task, run.model, nxt))
        await self.write_status(task)

    async def write_status(self, task: Task) -> None:
        async with task.status_lock:
            if task.status_sent == task.changes:
                return  # a write that waited for this lock carried it already
            changes = task.changes
            done = len(task.entries)
            written = {
                "phase": Phase.SUCCEEDED if done == task.total else Phase.RUNNING,
                "progress": f"{done}/{task.total}",
                "runs": list(task.entries.values()),
            }
            ns, name = task.owner.namespace, task.owner.name
            path = f"{API}/namespaces/{ns}/evaltasks/{name}/status"
            await self.call("PATCH", path, {"status": written}, MERGE)
            task.status_sent = changes


def session(kubeconfig: Path) -> tuple[aiohttp.ClientSession, str]:
    """A session with the kubeconfig's server, CA and token (as localkube writes them)."""
    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    tls = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    connector = aiohttp.TCPConnector(ssl=tls, limit=2 * constants.DEFAULT_WORKERS)
    headers = {"Authorization": f"Bearer {user['token']}", "User-Agent": AGENT}
    return aiohttp.ClientSession(connector=connector, headers=headers), cluster["server"]


async def main(kubeconfig: Path) -> None:
    http, server = session(kubeconfig)
    async with http:
        baseline = Baseline(http, server)
        selector = f"?labelSelector={SELECTOR}"
        watches = [
            asyncio.create_task(baseline.watch(path, on))
            for path, on in (
                (f"{API}/evaltasks", baseline.on_evaltask),
                (f"/apis/batch/v1/jobs{selector}", baseline.on_job),
                (f"/api/v1/pods{selector}", baseline.on_pod),
            )
        ]
        print("ready", flush=True)
        await asyncio.wait([*watches, baseline.failed], return_when=asyncio.FIRST_COMPLETED)
        for watch in watches:
            watch.cancel()
        if baseline.failed.done():
            await baseline.failed  # raises: the traceback goes to stderr, the exit code is 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    asyncio.run(main(parser.parse_args().kubeconfig))
