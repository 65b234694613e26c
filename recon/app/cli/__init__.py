"""The ``recon`` command line: ``recon info|run|demo ...``.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and ``main(args) -> int``.
Any :class:`recon.errors.ReconError` becomes one line on stderr and exit code 2; no tracebacks.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import signal

from recon.errors import ReconError
from recon import __version__

#: subcommand name -> module (imported lazily so ``recon info`` does not import torch)
SUBCOMMANDS = {
    "info": "recon.app.cli.info",
    "run": "recon.app.cli.run",
    "demo": "recon.app.cli.demo",
    "eval": "recon.app.cli.eval",
    "batch": "recon.app.cli.batch",
    "simulate": "recon.app.cli.simulate",
    "train": "recon.app.cli.train",
    "report": "recon.app.cli.report",
    "calibrate": "recon.app.cli.calibrate",
    "export-weights": "recon.app.cli.export_weights",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every bad input
        sys.stderr.write(f"recon: {message}\n(see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="recon", description="MRI reconstruction: raw scanner files to images.")
    parser.add_argument("--version", action="version", version=f"recon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, modname in SUBCOMMANDS.items():
        importlib.import_module(modname).add_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (temporary ``.part`` files, locks) runs."""


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)  # SIGTERM cleans up as SIGINT does (issue 18)
    except ValueError:  # pragma: no cover - not the main thread (embedded use)
        pass
    try:
        return int(args.handler(args) or 0)
    except ReconError as exc:
        sys.stderr.write(f"recon: {exc}\n")
        return exc.exit_code
    except Terminated:
        sys.stderr.write("recon: terminated (SIGTERM); no partial output left\n")
        return 143
    except KeyboardInterrupt:
        sys.stderr.write("recon: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
