"""``python -m nbstream.server`` is ``nbstream serve``."""

from nbstream.server.command import main

if __name__ == "__main__":
    raise SystemExit(main())
