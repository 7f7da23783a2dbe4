"""`OneLineParser`: the argparse every command line of the project uses.

A wrong flag or value is one line, `prog: error: ...`, naming the flag and what is valid (never the
usage block); an unknown flag or sub-command names the closest valid one; flags are never matched
by prefix (`--seed` is not `--seeds`). It lives here, in the package with no heavy imports and no
project imports, so `analysis`, `datasets` and `engine` can all use it without importing each
other's code.
"""
from __future__ import annotations

import argparse
import difflib
import re
from typing import Callable

__all__ = ["HelpFormatter", "OneLineParser", "at_least", "number_at_least"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks and shows every flag's default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or action.default == []:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default %(default)s)" if text else "(default %(default)s)"
        return text


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors, the closest valid flag or choice for a typo, no prefix matching."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            flags = _flags(self)
            hints = []
            for arg in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(arg.split("=")[0], flags, n=1) if arg.startswith("-") else []
                hints.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
            message = f"unrecognized arguments: {' '.join(hints)}; see --help"
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            options = [c.strip().strip("'") for c in choice.group(2).split(",")]
            close = difflib.get_close_matches(choice.group(1), options, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag of `parser` and of its sub-commands (a sub-command's unknown flags reach its parent)."""
    flags = []
    for action in parser._actions:
        flags += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags += _flags(sub)
    return list(dict.fromkeys(flags))


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type`: an integer >= `minimum`, else a message naming the valid range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def number_at_least(minimum: float, strict: bool = False) -> Callable[[str], float]:
    """An argparse `type`: a number >= `minimum` (> with `strict`), else a message naming the valid range."""

    def parse(text: str) -> float:
        relation = ">" if strict else ">="
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {relation} {minimum:g}, got {text!r}") from None
        if not value >= minimum or (strict and value == minimum):  # `not >=` also refuses nan
            raise argparse.ArgumentTypeError(f"must be a number {relation} {minimum:g}, got {text}")
        return value
    return parse


def fraction(text: str) -> float:
    """An argparse `type`: a number within [0, 1], else a message naming the valid range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number within [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number within [0, 1], got {text}")
    return value
