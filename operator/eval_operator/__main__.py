"""`python -m eval_operator` (or `eval-operator`): run the operator.

It talks to the cluster of the current kubeconfig, or the in-cluster config when run in
a pod, and watches all namespaces or the ones given.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from functools import partial
from typing import Any

from eval_operator import constants


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="eval-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        default=None,
        help="a namespace to watch (repeat for several; default: all namespaces; "
        "env EVAL_OPERATOR_NAMESPACES, comma-separated)",
    )
    option = partial(_option, parser)
    option("--runner-image", constants.DEFAULT_RUNNER_IMAGE, "image of the collector container")
    option(
        "--default-timeout",
        constants.DEFAULT_TIMEOUT_SECONDS,
        "seconds a task may run when its timeoutSeconds is absent",
        type=int,
    )
    option(
        "--start-timeout",
        constants.DEFAULT_START_TIMEOUT_SECONDS,
        "seconds a run's pod may fail to be created or started (quota, missing service "
        "account, image pull) before the run fails",
        type=float,
    )
    option(
        "--job-ttl",
        constants.DEFAULT_JOB_TTL_SECONDS,
        "seconds a finished Job and its pods (and so `kubectl logs job/<name>`) stay once "
        "its run's result is recorded in its EvalRun, as the Job's ttlSecondsAfterFinished "
        "(0 keeps them until their EvalTask is deleted)",
        type=_seconds,
    )
    option(
        "--progress-interval",
        constants.DEFAULT_PROGRESS_INTERVAL_SECONDS,
        "seconds between two reads of a running run's log for its progress (at most one "
        "read per run per interval; 0 disables)",
        type=float,
    )
    option(
        "--log-level",
        "INFO",
        "log level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
    )
    option("--metrics-port", 8080, "port of /metrics, /healthz and /readyz; 0 disables", type=int)
    option("--metrics-host", "0.0.0.0", "address of /metrics, /healthz and /readyz")
    option(
        "--workers",
        constants.DEFAULT_WORKERS,
        "reconcile passes of different EvalTasks run at once",
        type=int,
    )
    option(
        "--leader-elect",
        "true",
        "reconcile only while holding a coordination.k8s.io Lease, so that of several "
        "replicas one writes at a time",
        type=_flag,
    )
    option(
        "--leader-elect-namespace", "", "the Lease's namespace (empty: the pod's own, else default)"
    )
    option("--leader-elect-name", "eval-operator", "the Lease's name")
    args = parser.parse_args(argv)
    listed = os.environ.get("EVAL_OPERATOR_NAMESPACES", "")
    if args.namespaces is None and listed:
        args.namespaces = [n.strip() for n in listed.split(",") if n.strip()]
    return args


def _option(
    parser: argparse.ArgumentParser, flag: str, default: object, said: str, **kwargs: Any
) -> None:
    """`flag`, whose default EVAL_OPERATOR_<FLAG> overrides. A default given as a string
    goes through `type` as a value on the command line would: a bad one is said the same
    way, naming the flag."""
    name = "EVAL_OPERATOR_" + flag.removeprefix("--").replace("-", "_").upper()
    value = os.environ.get(name, str(default))
    shown = f"{said} (default {default}; env {name})"
    parser.add_argument(flag, default=value, help=shown.replace("%", "%%"), **kwargs)


def _seconds(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is negative")
    return seconds


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def _api_client(connections: int) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    # One connection per thread that calls the API (each pass worker and as many writers):
    # a full pool would open and drop connections per request.
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "DEBUG":
        # kopf logs every handler call at INFO; our own log says what changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import kopf

    from eval_operator import handlers, kube, leader, progress, reconcile, server

    namespaces: list[str] = args.namespaces or []
    api_client = _api_client(2 * args.workers)
    handlers.RECONCILER = reconciler = handlers.Reconciler(
        lambda: kube.KubeApi(api_client),
        reconcile.Config(
            runner_image=args.runner_image,
            default_timeout=args.default_timeout,
            start_timeout=args.start_timeout,
            job_ttl=args.job_ttl,
            progress=progress.Poller(args.progress_interval) if args.progress_interval else None,
        ),
        workers=args.workers,
    )

    @kopf.on.startup()
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        handlers.configure(settings, namespaces)

    async def run() -> None:
        # Probes and /metrics answer while this replica waits to lead, too.
        if args.metrics_port:
            await server.start(args.metrics_host, args.metrics_port)
        elector = None
        if args.leader_elect:
            elector = leader.Elector(
                api_client,
                leader.Settings(
                    namespace=args.leader_elect_namespace or leader.default_namespace(),
                    name=args.leader_elect_name,
                    identity=leader.new_identity(),
                ),
            )
            elector.start()
            while not elector.leading.is_set():
                await asyncio.sleep(0.2)
        try:
            await kopf.operator(standalone=True, clusterwide=not namespaces, namespaces=namespaces)
        finally:
            if elector is not None:
                reconciler.close()  # no pass writes after the Lease is handed on
                elector.release()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
