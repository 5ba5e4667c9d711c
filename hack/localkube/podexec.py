"""Become one container: private mount and UTS namespaces, bind mounts, then exec.

The local node runs `python -I -S podexec.py SPEC.json` in a new session with
stdout/stderr on the container's log file. Mounts made here are invisible to the
host and to other pods (private propagation), so two pods can mount different
folders at the same path, as containers do. Only the standard library is used
(`-I -S` start fast and ignore the caller's site-packages).

SPEC keys: argv, env, cwd, hostname, parentPid, startError (a file path), and
mounts: [{source, target, readOnly}], parents first. If anything fails before the
command starts, the reason goes to `startError` and the exit code is 128, which
the node reports as a StartError, like a container runtime does.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
START_FAILED = 128
_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source else None
    _check(_LIBC.mount(src, target.encode(), None, flags, None), f"mount {source} on {target}")


def _ensure_target(source: str, target: str) -> None:
    """Create a missing mount point: a folder for a folder, an empty file for a file.

    Mount points live on the host's filesystem (a namespace shares it); they are
    empty placeholders, left in place since other pods may be using them.
    """
    if os.path.lexists(target):
        return
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def _fail(spec: dict[str, Any], message: str) -> NoReturn:
    with open(spec["startError"], "w") as out:
        out.write(message)
    print(f"localnode: {message}", file=sys.stderr, flush=True)
    os._exit(START_FAILED)


def _enter_namespaces(spec: dict[str, Any]) -> None:
    _check(_LIBC.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    # Without this, mounts would propagate back to the host through shared peers.
    _mount(None, "/", MS_REC | MS_PRIVATE)
    hostname = spec["hostname"].encode()
    _check(_LIBC.sethostname(hostname, len(hostname)), "sethostname")
    for mount in spec["mounts"]:
        _ensure_target(mount["source"], mount["target"])
        _mount(mount["source"], mount["target"], MS_BIND | MS_REC)
        if mount["readOnly"]:
            _mount(None, mount["target"], MS_REMOUNT | MS_BIND | MS_RDONLY)
    cwd = spec.get("cwd") or "/"
    os.makedirs(cwd, exist_ok=True)
    os.chdir(cwd)


def main(spec_path: str) -> NoReturn:
    with open(spec_path) as source:
        spec = json.load(source)
    # Die with the node (even on SIGKILL); exec keeps this setting.
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != spec["parentPid"]:
        os._exit(START_FAILED)  # the node is already gone
    try:
        _enter_namespaces(spec)
    except OSError as error:
        _fail(spec, f"failed to set up the container: {error}")
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as error:
        _fail(spec, f'exec: "{argv[0]}": {error.strerror}')


if __name__ == "__main__":
    main(sys.argv[1])
