"""`kubectl eval`: read and rerun evaluations (kubectl-eval on PATH is a kubectl plugin).

    kubectl eval results NAME [-o table|wide|json|csv]
    kubectl eval compare NAME [NAME...]
    kubectl eval logs NAME MODEL TASK
    kubectl eval rerun NAME (--failed | --all | MODEL TASK)
    kubectl eval configs [-o table|json]

It reads only the API (EvalTasks, EvalRuns, task configurations, pods and their logs), as
the kubeconfig's user:
KUBECONFIG, --context and --namespace work as in kubectl (kubectl passes no flags to a
plugin; it sees them itself). Rendering is in results_view.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from eval_operator import constants, results_view


class CliError(Exception):
    """What went wrong, in words for the user (exit code 1)."""


class Client:
    """The few reads and writes the commands make."""

    def __init__(self, context: str | None, namespace: str | None) -> None:
        from kubernetes import client, config

        try:
            config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
        except config.ConfigException as e:
            raise CliError(f"no usable kubeconfig: {e}") from None
        contexts, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        found = next((c for c in contexts if c["name"] == context), active)
        self.namespace = namespace or found["context"].get("namespace") or "default"
        self.custom = client.CustomObjectsApi()
        self.core = client.CoreV1Api()
        self._exception = client.exceptions.ApiException

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._exception as e:
            if e.status == 404:
                raise CliError(f"{what} not found in namespace {self.namespace}") from None
            raise CliError(f"{what}: the API server said {e.status} {e.reason}") from None
        except OSError as e:  # connection refused, DNS
            raise CliError(f"the API server could not be reached: {e}") from None

    def evaltask(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self._call(
            f'evaltask "{name}"',
            self.custom.get_namespaced_custom_object,
            constants.GROUP,
            constants.VERSION,
            self.namespace,
            constants.EVALTASK.plural,
            name,
        )
        return doc

    def evalruns(self, evaltask: str) -> list[dict[str, Any]]:
        doc = self._call(
            f'the EvalRuns of "{evaltask}"',
            self.custom.list_namespaced_custom_object,
            constants.GROUP,
            constants.VERSION,
            self.namespace,
            constants.EVALRUN.plural,
            label_selector=f"{constants.LABEL_EVALTASK}={evaltask}",
        )
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    def annotate(self, evaltask: str, key: str, value: str) -> None:
        self._call(
            f'evaltask "{evaltask}"',
            self.custom.patch_namespaced_custom_object,
            constants.GROUP,
            constants.VERSION,
            self.namespace,
            constants.EVALTASK.plural,
            evaltask,
            {"metadata": {"annotations": {key: value}}},
        )

    def delete_evalrun(self, name: str) -> None:
        self._call(
            f'evalrun "{name}"',
            self.custom.delete_namespaced_custom_object,
            constants.GROUP,
            constants.VERSION,
            self.namespace,
            constants.EVALRUN.plural,
            name,
        )

    def task_configs(self) -> list[dict[str, Any]]:
        doc = self._call(
            "the EvalTaskConfigs",
            self.custom.list_namespaced_custom_object,
            constants.GROUP,
            constants.VERSION,
            self.namespace,
            constants.TASK_CONFIG.plural,
        )
        return _by_name(doc)

    def cluster_task_configs(self) -> list[dict[str, Any]] | str:
        """The ClusterEvalTaskConfigs, or why they could not be read: a namespace's user
        may be refused them and still use the namespace's own."""
        try:
            doc: Any = self.custom.list_cluster_custom_object(
                constants.GROUP, constants.VERSION, constants.CLUSTER_TASK_CONFIG.plural
            )
        except self._exception as e:
            return f"the API server said {e.status} {e.reason}"
        return _by_name(doc)

    def pods_of(self, job: str) -> list[Any]:
        pods = self._call(
            f'the pods of job "{job}"',
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"batch.kubernetes.io/job-name={job}",
        )
        return sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)

    def log(self, pod: str) -> str:
        text: str = self._call(
            f'the log of pod "{pod}"',
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            container=constants.TASK_CONTAINER,
        )
        return text


def _by_name(doc: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = doc.get("items") or []
    return sorted(items, key=lambda c: str(c["metadata"]["name"]))


def _runs(client: Client, name: str) -> tuple[dict[str, Any], list[results_view.Run]]:
    evaltask = client.evaltask(name)
    return evaltask, results_view.runs_of(evaltask, client.evalruns(name))


def _the_run(client: Client, name: str, model: str, task: str) -> results_view.Run:
    _evaltask, runs = _runs(client, name)
    found = [r for r in runs if r.model == model and r.task == task]
    if not found:
        models = sorted({r.model for r in runs})
        tasks = sorted({r.task for r in runs})
        raise CliError(
            f'evaltask "{name}" has no run of model "{model}" on task "{task}" '
            f"(models: {', '.join(models) or '-'}; tasks: {', '.join(tasks) or '-'})"
        )
    return found[0]


def results(client: Client, args: argparse.Namespace) -> str:
    evaltask, runs = _runs(client, args.name)
    return results_view.results(evaltask, runs, args.output)


def compare(client: Client, args: argparse.Namespace) -> str:
    return results_view.compare([_runs(client, name) for name in args.names])


def logs(client: Client, args: argparse.Namespace) -> str:
    run = _the_run(client, args.name, args.model, args.task)
    if not run.name:
        raise CliError(f"{args.model}/{args.task} has no EvalRun yet: it has not started")
    pods = client.pods_of(run.name)  # a run's Job has its EvalRun's name
    if not pods:
        raise CliError(
            f"{args.model}/{args.task} ({run.state}) has no pod: it has not started, or its "
            f"pod is gone; its record says: {run.message or '-'}"
        )
    return client.log(pods[-1].metadata.name)


def rerun(client: Client, args: argparse.Namespace) -> str:
    if args.failed or args.all:
        value = constants.RERUN_FAILED if args.failed else constants.RERUN_ALL
        client.evaltask(args.name)  # says so when it does not exist
        client.annotate(args.name, constants.ANNOTATION_RERUN, value)
        return f'evaltask "{args.name}": rerun of {value} runs requested\n'
    if not (args.model and args.task):
        raise CliError("rerun needs --failed, --all, or MODEL TASK")
    run = _the_run(client, args.name, args.model, args.task)
    if not run.name:
        return f"{args.model}/{args.task} has not run yet: nothing to rerun\n"
    client.delete_evalrun(run.name)  # the operator reruns a run whose EvalRun is deleted
    return f'evaltask "{args.name}": {args.model}/{args.task} will run again\n'


def configs(client: Client, args: argparse.Namespace) -> str:
    namespaced = client.task_configs()
    return results_view.configs(
        namespaced, client.cluster_task_configs(), datetime.now(UTC), args.output
    )


def parser() -> argparse.ArgumentParser:
    # -n and --context before or after the command, as kubectl takes them; a default of
    # SUPPRESS keeps a subcommand from overwriting one given before it.
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        help="the namespace (default: the context's)",
    )
    where.add_argument(
        "--context",
        default=argparse.SUPPRESS,
        help="the kubeconfig context (default: the current one)",
    )
    top = argparse.ArgumentParser(
        prog="kubectl eval",
        description="Read and rerun eval-operator's evaluations.",
        parents=[where],
    )
    sub = top.add_subparsers(dest="command", required=True)
    add = partial(sub.add_parser, parents=[where])
    p = add("results", help="an EvalTask's scores (models x tasks), its leaderboard")
    p.add_argument("name")
    p.add_argument("-o", "--output", choices=["table", "wide", "json", "csv"], default="table")
    p.set_defaults(run=results)
    p = add("compare", help="several EvalTasks' scores side by side")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(run=compare)
    p = add("logs", help="a run's evaluation log (its task container's)")
    p.add_argument("name")
    p.add_argument("model")
    p.add_argument("task")
    p.set_defaults(run=logs)
    p = add("rerun", help="run failed runs, all runs, or one run again")
    p.add_argument("name")
    p.add_argument("model", nargs="?")
    p.add_argument("task", nargs="?")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="every failed run")
    which.add_argument("--all", action="store_true", help="every run")
    p.set_defaults(run=rerun)
    p = add("configs", help="the task configurations a namespace's EvalTasks can reference")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(run=configs)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        client = Client(getattr(args, "context", None), getattr(args, "namespace", None))
        sys.stdout.write(args.run(client, args))
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
