"""`python -m eval_runner <command>`: the entry point of the runner image."""

from __future__ import annotations

import sys

COMMANDS = ("run", "collect", "probe")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print(f"usage: python -m eval_runner {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    if args[0] == "run":
        from eval_runner import run

        return run.main(args[1:])
    if args[0] == "probe":
        from eval_runner import probe

        return probe.main(args[1:])
    from eval_runner import collect

    return collect.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
