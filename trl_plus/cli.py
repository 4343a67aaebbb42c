"""The `trl-plus` command line: `train`, `eval`, `demo` and `tiny-model`.

Each subcommand lives in `trl_plus/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. Expected user errors (bad paths, unknown names, malformed files) are
printed as one line with the fix, without a traceback.

One flag convention everywhere: options are spelt in snake_case as in TRL (`--max_steps`,
`--out_dir`), and the kebab spelling (`--max-steps`, `--out-dir`) is accepted as well.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from trl_plus.errors import UserError

COMMANDS = {
    "train": "trl_plus.commands.train",
    "eval": "trl_plus.commands.evaluate",
    "demo": "trl_plus.commands.demo",
    "tiny-model": "trl_plus.commands.tiny_model",
    "real-model": "trl_plus.commands.real_model",
}

# Spellings users bring from other tools, mapped to ours, for "did you mean".
ALIASES = {
    "lr": "learning_rate",
    "steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "epochs": "num_train_epochs",
    "model_name_or_path": "model",
    "model_name": "model",
    "data": "dataset",
    "rewards": "reward",
    "reward_funcs": "reward",
    "output": "output_dir",
    "out": "output_dir",
}


def suggest(option: str, valid) -> str:
    """' (did you mean --x?)' for an unknown `--option`, from `valid` option names (without dashes), or ''."""
    name = option.lstrip("-").split("=")[0].replace("-", "_")
    valid = {v.lstrip("-").replace("-", "_") for v in valid}
    close = [ALIASES[name]] if ALIASES.get(name) in valid else difflib.get_close_matches(name, valid, n=2, cutoff=0.7)
    return f" (did you mean {' or '.join('--' + c for c in close)}?)" if close else ""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # `--max_step` must not silently mean `--max_steps`
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line with the fix instead of argparse's usage dump
        self.exit(2, f"{self.prog}: error: {message}. Run '{self.prog} --help' for the valid options.\n")

    def unknown(self, extras: list[str]):
        hints = [f"{a}{suggest(a, self._option_string_actions)}" for a in extras]
        self.error(f"unrecognized arguments: {' '.join(hints)}")


def accept_both_spellings(parser: argparse.ArgumentParser) -> None:
    """Accept `--a-b` for `--a_b` and the reverse, without listing both in the help."""
    for option, action in list(parser._option_string_actions.items()):
        if option.startswith("--"):
            for other in ("--" + option[2:].replace("-", "_"), "--" + option[2:].replace("_", "-")):
                parser._option_string_actions.setdefault(other, action)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trl-plus", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS.values():
        p = importlib.import_module(module).add_parser(sub)
        accept_both_spellings(p)
        p.set_defaults(_parser=p)
    return parser


def _version() -> str:
    from trl_plus import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extras = build_parser().parse_known_args(argv)
    if extras and not getattr(args, "takes_extra", False):
        args._parser.unknown(extras)
    args.extra = extras
    try:
        return int(args.run(args) or 0)
    except (UserError, FileNotFoundError) as e:
        print(f"trl-plus {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
