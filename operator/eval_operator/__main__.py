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
from typing import Any

from eval_operator import constants


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
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
    parser.add_argument(
        "--runner-image",
        default=env("EVAL_OPERATOR_RUNNER_IMAGE", constants.DEFAULT_RUNNER_IMAGE),
        help="image of the collector container (env EVAL_OPERATOR_RUNNER_IMAGE)",
    )
    parser.add_argument(
        "--default-timeout",
        type=int,
        default=int(env("EVAL_OPERATOR_DEFAULT_TIMEOUT", str(constants.DEFAULT_TIMEOUT_SECONDS))),
        help="seconds a task may run when its timeoutSeconds is absent (default 86400; "
        "env EVAL_OPERATOR_DEFAULT_TIMEOUT)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=float(
            env("EVAL_OPERATOR_START_TIMEOUT", str(constants.DEFAULT_START_TIMEOUT_SECONDS))
        ),
        help="seconds a run's pod may fail to be created or started (quota, missing service "
        "account, image pull) before the run fails (default 600; env EVAL_OPERATOR_START_TIMEOUT)",
    )
    parser.add_argument(
        "--job-ttl",
        type=_seconds,
        default=_seconds(env("EVAL_OPERATOR_JOB_TTL", str(constants.DEFAULT_JOB_TTL_SECONDS))),
        help="seconds a finished Job and its pods (and so `kubectl logs job/<name>`) stay once "
        "its run's result is recorded in its EvalRun, as the Job's ttlSecondsAfterFinished "
        "(default 86400; 0 keeps them until their EvalTask is deleted; env "
        "EVAL_OPERATOR_JOB_TTL)",
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=float(
            env(
                "EVAL_OPERATOR_PROGRESS_INTERVAL",
                str(constants.DEFAULT_PROGRESS_INTERVAL_SECONDS),
            )
        ),
        help="seconds between two reads of a running run's log for its progress (at most "
        "one read per run per interval; default 30, 0 disables; env "
        "EVAL_OPERATOR_PROGRESS_INTERVAL)",
    )
    parser.add_argument(
        "--log-level",
        default=env("EVAL_OPERATOR_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (env EVAL_OPERATOR_LOG_LEVEL)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("EVAL_OPERATOR_METRICS_PORT", "8080")),
        help="port of /metrics, /healthz and /readyz; 0 disables (env EVAL_OPERATOR_METRICS_PORT)",
    )
    parser.add_argument("--metrics-host", default=env("EVAL_OPERATOR_METRICS_HOST", "0.0.0.0"))
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env("EVAL_OPERATOR_WORKERS", str(constants.DEFAULT_WORKERS))),
        help="reconcile passes of different EvalTasks run at once (default 16; "
        "env EVAL_OPERATOR_WORKERS)",
    )
    parser.add_argument(
        "--leader-elect",
        type=_flag,
        default=_flag(env("EVAL_OPERATOR_LEADER_ELECT", "true")),
        help="reconcile only while holding a coordination.k8s.io Lease, so that of several "
        "replicas one writes at a time (default true; env EVAL_OPERATOR_LEADER_ELECT)",
    )
    parser.add_argument(
        "--leader-elect-namespace",
        default=env("EVAL_OPERATOR_LEADER_ELECT_NAMESPACE", ""),
        help="the Lease's namespace (default: the pod's own, else default)",
    )
    parser.add_argument(
        "--leader-elect-name",
        default=env("EVAL_OPERATOR_LEADER_ELECT_NAME", "eval-operator"),
        help="the Lease's name (default eval-operator)",
    )
    args = parser.parse_args(argv)
    if args.namespaces is None and env("EVAL_OPERATOR_NAMESPACES"):
        args.namespaces = [
            n.strip() for n in env("EVAL_OPERATOR_NAMESPACES", "").split(",") if n.strip()
        ]
    return args


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
