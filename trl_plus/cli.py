"""The `trl-plus` command line: `train`, `eval`, `demo` and `tiny-model`.

Each subcommand lives in `trl_plus/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. Expected user errors (bad paths, unknown names, malformed files) are
printed as one line with the fix, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "train": "trl_plus.commands.train",
    "eval": "trl_plus.commands.evaluate",
    "demo": "trl_plus.commands.demo",
    "tiny-model": "trl_plus.commands.tiny_model",
    "real-model": "trl_plus.commands.real_model",
}


class UserError(Exception):
    """An error caused by the user's input; the CLI prints its message alone and exits 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line with the fix instead of argparse's usage dump
        self.exit(2, f"{self.prog}: error: {message}. Run '{self.prog} --help' for the valid options.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trl-plus", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def _version() -> str:
    from trl_plus import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    # The product runs offline by default; users with internet can set HF_HUB_OFFLINE=0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    from trl_plus.data import DataError

    try:
        return int(args.run(args) or 0)
    except (UserError, DataError, FileNotFoundError) as e:
        print(f"trl-plus {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m trl_plus.cli` runs this file as `__main__`, a second copy of the module whose UserError
    # is not the one the commands raise: call the real module's main.
    from trl_plus.cli import main as _main

    sys.exit(_main())
