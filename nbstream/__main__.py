"""The ``nbstream`` command: picks the face a subcommand belongs to.

``nbstream serve …`` is the server (:mod:`nbstream.server.command`) and ``nbstream run JOB`` a job
served read-only (:mod:`nbstream.server.run`); every other command — ``sql``, ``export`` — is the
command line's (:mod:`nbstream.cli`). This module sits above the faces, so that neither imports the
other; each is imported only when its command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: nbstream {sql,serve,export,run} ...

  sql     run statements (a prompt on a terminal) on the embedded engine or a server (nbstream sql --help)
  serve   serve the engine through ksqlDB's REST API (nbstream serve --help)
  export  export a notebook to a deployable job (nbstream export --help)
  run     run an exported job, durable, its REST API read-only (nbstream run --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from nbstream.server.command import main as serve

        return serve(args[1:])
    if args and args[0] == "run":
        from nbstream.server.run import main as run

        return run(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    from nbstream.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    raise SystemExit(main())
