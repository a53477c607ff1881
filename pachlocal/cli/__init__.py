"""``pachlocal``: pachctl's verbs over a local state directory.

Every listing prints pachctl's table by default and JSON with ``--raw``.
Errors print one line and exit 1; a traceback means a bug in pachlocal.
"""

# The commands live in one module per noun, as pachctl's do; importing each registers
# its commands in ``COMMANDS``. This module builds the parser from them and runs one.

from __future__ import annotations

import argparse
import errno
import signal
import sqlite3
import sys
from collections.abc import Sequence

from .. import cron
from ..engine import Engine, EngineError
from ..globs import GlobError
from ..secrets import SecretError
from ..spec import SpecError
from ..store import StoreError, default_home
from . import admin, commit, datum, file, job, pipeline, repo, secret  # noqa: F401 (registers)
from .common import COMMANDS, Command, UsageError, command, make_progress

__all__ = ["COMMANDS", "Command", "UsageError", "build_parser", "command", "main"]

# errors of the machine rather than of pachlocal: reported in one line, without a traceback
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def _add(parser: argparse.ArgumentParser, cmd: Command) -> None:
    parser.set_defaults(handler=cmd.handler, write=cmd.write, state=cmd.state)
    for arg in cmd.args:
        parser.add_argument(*arg.flags, **arg.options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pachlocal", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no job summaries on stderr")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    by_verb: dict[str, dict[str, Command]] = {}
    for (verb, noun), cmd in COMMANDS.items():
        by_verb.setdefault(verb, {})[noun] = cmd
    for verb, nouns in sorted(by_verb.items()):
        bare = nouns.get("")
        vp = verbs.add_parser(
            verb, help=((bare.handler.__doc__ or "") if bare else "").split("\n")[0]
        )
        if bare is not None:  # e.g. ``run`` (run queued jobs) beside ``run cron``
            _add(vp, bare)
        if len(nouns) > (bare is not None):
            sub = vp.add_subparsers(dest="noun", required=bare is None, metavar="NOUN")
            for noun, cmd in sorted(nouns.items()):
                if noun:
                    _add(sub.add_parser(noun), cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    home = default_home()
    engine: Engine | None = None
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.state:
            engine = Engine(
                home,
                write=args.write,
                progress=make_progress(args.quiet),
                command=" ".join(sys.argv[1:3]) if argv is None else " ".join(list(argv)[:2]),
            )
        return int(args.handler(args, engine))
    except KeyboardInterrupt:
        print(
            "pachlocal: interrupted; nothing half-committed (unfinished jobs rerun next time)",
            file=sys.stderr,
        )
        return 130
    except (
        StoreError,
        EngineError,
        SpecError,
        SecretError,
        GlobError,
        UsageError,
        cron.ScheduleError,
        ValueError,
    ) as exc:
        print(f"pachlocal: {exc}", file=sys.stderr)
        return 1
    except sqlite3.OperationalError as exc:  # a full disk or an unreadable state database
        print(f"pachlocal: {home / 'meta.db'}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"pachlocal: {exc.filename or home}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        if engine is not None:
            engine.close()
