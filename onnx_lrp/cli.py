"""The ``onnx-lrp`` command: argument parsing and dispatch only.

``onnx-lrp MODEL INPUT [options]`` (or ``python -m onnx_lrp ...``) runs the default command,
``explain``. A first word that names a subcommand runs that one instead (``onnx-lrp inspect
MODEL``). A subcommand is a module of :mod:`onnx_lrp.commands` with

``HELP``                 one line for ``onnx-lrp --help``
``USAGE``                (optional) the usage line, e.g. ``"onnx-lrp inspect MODEL [options]"``
``EXAMPLES``             (optional) text shown at the end of its ``--help``
``add_arguments(parser)`` adds its arguments to an :class:`argparse.ArgumentParser`
``run(args) -> int``      does the work; raises :class:`onnx_lrp.OnnxLrpError` for user errors

found by its file name (:data:`SUBCOMMANDS`), so adding one is adding one module. Options that
several commands take are defined once in :mod:`onnx_lrp.commands.options`.

Exit codes: 0 success; 2 usage error (a malformed command line: unknown option, missing or
invalid argument); 1 any other failure. Every error is one line on stderr that names what was
wrong and what to do.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from .errors import OnnxLrpError

PROG = "onnx-lrp"

DEFAULT_COMMAND = "explain"
#: modules of onnx_lrp.commands that are not subcommands (text: the explain command's text runs)
HELPERS = {"options", "text"}


def _discover() -> dict[str, str]:
    from . import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__)
                   if not m.name.startswith("_") and m.name not in HELPERS)
    names.sort(key=lambda n: n != DEFAULT_COMMAND)  # the default command first in --help
    return {name: f"{commands.__name__}.{name}" for name in names}


#: first word -> module implementing it (see the module docstring)
SUBCOMMANDS = _discover()

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
TRACEBACK_ENV = "ONNX_LRP_TRACEBACK"


class UsageError(OnnxLrpError):
    """The command line is malformed (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised as :class:`UsageError`, not printed)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except SystemExit as exc:  # argparse's --help / --version
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_FAILURE)
    except UsageError as exc:
        _error(exc)
        return EXIT_USAGE
    except OnnxLrpError as exc:
        _error(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get(TRACEBACK_ENV):
            raise
        _error(f"internal error ({type(exc).__name__}: {exc}); rerun with {TRACEBACK_ENV}=1 for the traceback "
               "and report it")
        return EXIT_FAILURE


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        name, rest = argv[0], argv[1:]
        prog = f"{PROG} {name}"
    else:
        name, rest, prog = DEFAULT_COMMAND, argv, PROG
    module = importlib.import_module(SUBCOMMANDS[name])
    parser = build_parser(module, prog, top_level=name == DEFAULT_COMMAND and prog == PROG)
    if not rest:
        raise UsageError(f"missing arguments; usage: {parser.usage} (see {prog} --help)")
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


def build_parser(module, prog: str, top_level: bool = False) -> Parser:
    """The parser of one subcommand; the top-level one also lists the other subcommands."""
    epilog = getattr(module, "EXAMPLES", "")
    if top_level:
        epilog = (epilog + "\n\n" + _commands_text()).strip()
    parser = Parser(prog=prog, usage=getattr(module, "USAGE", None) if top_level else _usage(module, prog),
                    description=getattr(module, "DESCRIPTION", None) or getattr(module, "HELP", None),
                    epilog=epilog or None, formatter_class=argparse.RawDescriptionHelpFormatter)
    if top_level:
        from . import __version__
        parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    module.add_arguments(parser)
    return parser


def _usage(module, prog: str) -> str | None:
    usage = getattr(module, "USAGE", None)
    if usage and usage.startswith(PROG + " ") and not usage.startswith(prog):
        return prog + usage[len(PROG):]  # "onnx-lrp MODEL ..." -> "onnx-lrp explain MODEL ..."
    return usage


def _commands_text() -> str:
    lines = ["commands (first word; without one, explain):"]
    for name, path in SUBCOMMANDS.items():
        try:
            summary = getattr(importlib.import_module(path), "HELP", "")
        except Exception as exc:  # a broken subcommand must not break --help
            summary = f"(unavailable: {type(exc).__name__})"
        lines.append(f"  {name:<10} {summary}")
    lines.append(f"\nrun '{PROG} COMMAND --help' for a command's options")
    return "\n".join(lines)


def _error(exc) -> None:
    message = " ".join(str(exc).split())  # one line, whatever the library's message looked like
    print(f"{PROG}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
