"""Leader election: of the operator's replicas, only the holder of a Lease reconciles.

Two operators writing the same EvalTasks undo each other's work (one deletes what the
other just created). So, as kube-controller-manager does, every replica campaigns for a
coordination.k8s.io Lease (the kubernetes client's own `leaderelection`, with its
LeaseLock) and starts kopf only once it holds it. The holder renews the Lease every
`retry_period`; one that cannot renew it within `renew_deadline` exits at once, before
`lease_duration` has passed and another replica may take it, so two never write at once.
A replica that stops gracefully hands the Lease back, so the next one takes over at its
next try instead of waiting for the Lease to expire.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from eval_operator import metrics

log = logging.getLogger(__name__)

# kube-controller-manager's defaults: a dead leader is replaced within about 17 s.
LEASE_DURATION_SECONDS: Final = 15
RENEW_DEADLINE_SECONDS: Final = 10
RETRY_PERIOD_SECONDS: Final = 2
# (connect, read) seconds of one Lease call: well within the renew deadline.
REQUEST_TIMEOUT: Final = (2.0, 4.0)
_NAMESPACE_FILE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class Settings:
    namespace: str
    name: str = "eval-operator"
    identity: str = ""
    lease_duration: int = LEASE_DURATION_SECONDS
    renew_deadline: int = RENEW_DEADLINE_SECONDS
    retry_period: int = RETRY_PERIOD_SECONDS


def default_namespace() -> str:
    """The pod's own namespace (POD_NAMESPACE, or the service account's), else default."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(_NAMESPACE_FILE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def new_identity() -> str:
    """Host name plus a random part: a restarted process is a new candidate, which must
    wait for its predecessor's Lease to expire (it may still be writing)."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class _Refusals:
    """The Lease API, saying in the API server's words what it refuses: the library logs
    only a reason ("Forbidden") or a whole response, so a replica that never leads would
    not say plainly why. Not found and conflicts are the election's normal course."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            # Bounded: a hung call must not hold the renew loop past its deadline.
            kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
            try:
                return method(*args, **kwargs)
            except ApiException as e:
                if e.status not in (404, 409):
                    log.warning("the Lease was refused (%s): %s", name, _message(e))
                raise
            except Exception as e:
                # No answer (refused, timed out): the library handles only ApiException,
                # and anything else would end its thread without a word.
                log.warning("the Lease could not be reached (%s): %s", name, e)
                raise ApiException(status=0, reason=f"no answer: {e}") from None

        return call


class _Lock(LeaseLock):
    """LeaseLock on our API client; after release() it renews nothing more."""

    def __init__(self, api_client: Any, settings: Settings) -> None:
        super().__init__(settings.name, settings.namespace, settings.identity)  # type: ignore[no-untyped-call]
        self.api_instance = _Refusals(client.CoordinationV1Api(api_client))  # type: ignore[assignment]
        self.released = False

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        if self.released:
            return False
        return bool(super().update(name, namespace, updated_record))  # type: ignore[no-untyped-call]


class Elector:
    """Campaigns in a thread of its own; `leading` is set once this replica holds the
    Lease. Losing it afterwards calls `on_lost` (default: exit the process now)."""

    def __init__(
        self,
        api_client: Any,
        settings: Settings,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.leading = threading.Event()
        self._lock = _Lock(api_client, settings)
        self._on_lost = on_lost or _exit_now
        self._election = leaderelection.LeaderElection(  # type: ignore[no-untyped-call]
            electionconfig.Config(  # type: ignore[no-untyped-call]
                self._lock,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                onstarted_leading=self._started,
                onstopped_leading=self._stopped,
            )
        )

    def start(self) -> None:
        log.info(
            "%s campaigns for Lease %s/%s",
            self.settings.identity,
            self.settings.namespace,
            self.settings.name,
        )
        threading.Thread(target=self._campaign, name="leader-election", daemon=True).start()

    def _campaign(self) -> None:
        # The library's loop returns only once leading stopped (and _stopped said so);
        # should it end any other way, this replica would lead unrenewed, or wait for
        # ever: it exits instead, and its pod starts a new candidate.
        try:
            self._election.run()  # type: ignore[no-untyped-call]
        except Exception:
            log.exception("leader election failed")
        if not self._lock.released:
            self._on_lost()

    def _started(self) -> None:
        log.info("%s leads: it holds Lease %s", self.settings.identity, self.settings.name)
        metrics.LEADER.set(1)
        self.leading.set()

    def _stopped(self) -> None:
        metrics.LEADER.set(0)
        if self._lock.released:
            return  # we gave it back ourselves
        log.error("%s lost Lease %s: exiting", self.settings.identity, self.settings.name)
        self._on_lost()

    def release(self) -> None:
        """Hand the Lease back (holder cleared, 1 s left), if this replica holds it."""
        self._lock.released = True
        if not self.leading.is_set():
            return
        api = self._lock.api_instance
        try:
            lease = api.read_namespaced_lease(self.settings.name, self.settings.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.settings.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = datetime.now(UTC)
            api.replace_namespaced_lease(self.settings.name, self.settings.namespace, lease)
            log.info("%s released Lease %s", self.settings.identity, self.settings.name)
        except ApiException as e:
            # It then expires by itself, lease_duration after the last renewal.
            log.warning("could not release Lease %s: %s %s", self.settings.name, e.status, e.reason)


def _message(error: Any) -> str:
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError, AttributeError):
        return str(error)


def _exit_now() -> None:
    # Not sys.exit: this runs in the election's thread, and the pass threads must not
    # write one more object now that another replica may lead.
    logging.shutdown()
    os._exit(1)
