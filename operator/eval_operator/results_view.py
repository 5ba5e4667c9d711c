"""EvalTasks, their EvalRuns and saved task configurations as `kubectl eval` shows them:
pure rendering, no API.

`runs` are EvalRun objects as the API returns them; an EvalTask's status gives the order
(models x tasks, as its spec lists them) and the leaderboard.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eval_operator.statustypes import SCORED_STATES, RunState


@dataclass(frozen=True)
class Run:
    model: str
    task: str
    state: str
    score: float | None
    metrics: tuple[tuple[str, float], ...]
    message: str
    name: str


def runs_of(evaltask: Mapping[str, Any], evalruns: Sequence[Mapping[str, Any]]) -> list[Run]:
    """The EvalTask's runs in its status's order, each with its EvalRun's record."""
    records = {
        (str(r["spec"]["model"]), str(r["spec"]["task"])): r for r in evalruns if r.get("spec")
    }
    out = []
    for entry in (evaltask.get("status") or {}).get("runs") or []:
        key = (str(entry["model"]), str(entry["task"]))
        record = records.get(key) or {}
        status = record.get("status") or {}
        out.append(
            Run(
                model=key[0],
                task=key[1],
                state=str(status.get("state") or entry.get("state") or RunState.PENDING),
                score=status.get("score", entry.get("score")),
                metrics=tuple(
                    (str(m["name"]), float(m["value"])) for m in status.get("metrics") or []
                ),
                message=str(status.get("message") or ""),
                name=str((record.get("metadata") or {}).get("name") or ""),
            )
        )
    return out


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _cell(run: Run | None) -> str:
    """A run in a models x tasks table: its score once it has one, else its state."""
    if run is None:
        return ""
    return _score(run.score) if run.state in SCORED_STATES else run.state


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """kubectl's style: upper-case headers, columns padded by three spaces."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _ordered(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def results(evaltask: Mapping[str, Any], runs: Sequence[Run], output: str = "table") -> str:
    """`kubectl eval results NAME`: models x tasks with scores, then the leaderboard;
    -o wide adds each run's state and every metric, -o json and -o csv every metric."""
    status = evaltask.get("status") or {}
    leaderboard = status.get("leaderboard") or []
    name = str(evaltask["metadata"]["name"])
    if output == "json":
        doc = {
            "evaltask": name,
            "namespace": evaltask["metadata"].get("namespace", ""),
            "phase": status.get("phase", ""),
            "progress": status.get("progress", ""),
            "runs": [
                {
                    "model": r.model,
                    "task": r.task,
                    "state": r.state,
                    "score": r.score,
                    "metrics": dict(r.metrics),
                    "message": r.message,
                    "evalrun": r.name,
                }
                for r in runs
            ],
            "leaderboard": leaderboard,
        }
        return json.dumps(doc, indent=2) + "\n"
    if output == "csv":
        names = _ordered([m for r in runs for m, _ in r.metrics])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["model", "task", "state", "score", *names])
        for r in runs:
            values = dict(r.metrics)
            writer.writerow(
                [r.model, r.task, r.state, "" if r.score is None else r.score]
                + [values.get(m, "") for m in names]
            )
        return out.getvalue()
    if output == "wide":
        rows = [
            [
                r.model,
                r.task,
                r.state,
                _score(r.score),
                ", ".join(f"{m}={v:.4g}" for m, v in r.metrics) or "-",
            ]
            for r in runs
        ]
        body = _table(["MODEL", "TASK", "STATE", "SCORE", "METRICS"], rows)
    else:
        models = _ordered([r.model for r in runs])
        tasks = _ordered([r.task for r in runs])
        scores = {(r.model, r.task): r for r in runs}
        rows = [[m, *(_cell(scores.get((m, t))) for t in tasks)] for m in models]
        body = _table(["MODEL", *(t.upper() for t in tasks)], rows)
    board = _table(
        ["RANK", "MODEL", "SCORE", "TASKS"],
        [[str(e["rank"]), e["model"], _score(e["score"]), str(e["tasks"])] for e in leaderboard],
    )
    head = (
        f"{name}: {status.get('phase', 'Pending')}, {status.get('progress', '-')} runs finished\n"
    )
    if not leaderboard:
        board = "no leaderboard yet: no run has a score\n"
    return f"{head}\n{body}\n{board}"


def compare(tasks: Sequence[tuple[Mapping[str, Any], Sequence[Run]]]) -> str:
    """`kubectl eval compare NAME...`: each model's score in each EvalTask's tasks, side by
    side, then each EvalTask's leaderboard score."""
    columns = _ordered([f"{t['metadata']['name']}/{r.task}" for t, runs in tasks for r in runs])
    models = _ordered([r.model for _, runs in tasks for r in runs])
    scores = {(r.model, f"{t['metadata']['name']}/{r.task}"): r for t, runs in tasks for r in runs}
    boards = {
        (str(e["model"]), str(t["metadata"]["name"])): e
        for t, _ in tasks
        for e in (t.get("status") or {}).get("leaderboard") or []
    }
    names = [str(t["metadata"]["name"]) for t, _ in tasks]
    rows = []
    for model in models:
        cells = [_cell(scores.get((model, column))) for column in columns]
        overall = [
            _score(boards[(model, n)]["score"]) if (model, n) in boards else "" for n in names
        ]
        rows.append([model, *cells, *overall])
    header = ["MODEL", *(c.upper() for c in columns), *(f"{n.upper()} (ALL)" for n in names)]
    return _table(header, rows)


def _age(seconds: float) -> str:
    """kubectl's AGE: the largest unit that still shows at least two of it."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 2 * 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def configs(
    namespaced: Sequence[Mapping[str, Any]],
    cluster: Sequence[Mapping[str, Any]] | str,
    now: datetime,
    output: str = "table",
) -> str:
    """`kubectl eval configs`: the EvalTaskConfigs of a namespace, then the
    ClusterEvalTaskConfigs; `cluster` is a string (why) when they could not be listed."""
    found = [("EvalTaskConfig", c) for c in namespaced]
    if not isinstance(cluster, str):
        found += [("ClusterEvalTaskConfig", c) for c in cluster]
    entries = [
        {
            "kind": kind,
            "name": str(c["metadata"]["name"]),
            "image": str((c.get("spec") or {}).get("image") or ""),
            "version": str((c.get("spec") or {}).get("version") or ""),
            "created": str(c["metadata"].get("creationTimestamp") or ""),
        }
        for kind, c in found
    ]
    note = f"ClusterEvalTaskConfigs not listed: {cluster}\n" if isinstance(cluster, str) else ""
    if output == "json":
        doc: dict[str, Any] = {"configs": entries}
        if note:
            doc["clusterError"] = cluster
        return json.dumps(doc, indent=2) + "\n"
    if not entries:
        return f"no task configurations\n{note}"

    def age(created: str) -> str:
        when = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
        return _age((now - when).total_seconds()) if when else "-"

    rows = [
        [e["kind"], e["name"], e["image"], e["version"] or "-", age(e["created"])] for e in entries
    ]
    return _table(["KIND", "NAME", "IMAGE", "VERSION", "AGE"], rows) + note
