"""Command line of ``agent.pyz``: ``hello``, ``monitor``, ``run``, ``hash`` and ``version``.

Parsed by hand, not with argparse: ``hello`` and ``monitor`` run every minute and start-up
time is most of their cost.
"""

from __future__ import annotations

import json
import os
import sys

from . import protocol

USAGE = """\
usage: agent.pyz COMMAND [--root DIR]

Steward agent %s (protocol %d). Commands:
  hello [--root DIR]    print this host's facts as one JSON line
  monitor [--root DIR]  print one node-monitor sample as one JSON line
  run                   run a build: a SPEC frame on stdin, frames on stdout
  hash                  print the sha256 of this agent.pyz
  version               print the agent version
--root defaults to the current directory.
""" % (protocol.AGENT_VERSION, protocol.PROTOCOL_VERSION)


def _print_json(obj: dict) -> None:
    # One line; ensure_ascii keeps undecodable environment bytes (surrogates) valid JSON.
    sys.stdout.write(json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _usage_error(message: str) -> int:
    sys.stderr.write("agent.pyz: %s\n%s" % (message, USAGE))
    return 2


def _root_option(args: list):
    """The value of ``--root DIR`` / ``--root=DIR`` (default: the working directory)."""
    root = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--root" and i + 1 < len(args):
            root = args[i + 1]
            i += 2
        elif arg.startswith("--root="):
            root = arg[len("--root=") :]
            i += 1
        else:
            raise ValueError("unexpected argument %r" % arg)
    return root if root is not None else os.getcwd()


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("hello", "monitor"):
        from . import facts

        try:
            root = _root_option(rest)
        except ValueError as exc:
            return _usage_error(str(exc))
        _print_json(facts.hello(root) if command == "hello" else facts.monitor(root))
        return 0
    if rest:
        return _usage_error("unexpected argument %r" % rest[0])
    if command == "run":
        from . import runner

        return runner.main()
    if command == "hash":
        from . import facts

        digest = facts.own_hash()
        if digest is None:
            sys.stderr.write("agent.pyz hash: not running from an agent.pyz archive\n")
            return 1
        sys.stdout.write(digest + "\n")
        return 0
    if command == "version":
        sys.stdout.write(protocol.AGENT_VERSION + "\n")
        return 0
    return _usage_error("unknown command %r" % command)
