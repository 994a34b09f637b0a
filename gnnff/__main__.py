"""``python -m gnnff ...``: the command line (:mod:`gnnff.app.cli`)."""

from gnnff.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
