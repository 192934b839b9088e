"""Errors the command line reports as one line on stderr, and the exit codes it documents (README)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: an error Docloop did not expect (the class is named; DOCLOOP_DEBUG=1 shows the traceback)
EXIT_USAGE = 2  # bad arguments or input: a missing file or folder, a bad database URL, an existing output file
EXIT_UNREACHABLE = 3  # a service did not answer: the database or Kafka
EXIT_NO_DATA = 4  # nothing to work with: no Docloop store at that URL, or every replayed line was rejected


class CliError(Exception):
    """A problem a user can fix; the message names it (never a password or an event's content)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def writable_file(path: Path, what: str = "output") -> Path:
    """`path`, if a file can be written there: its folder exists and it is not a folder itself."""
    if path.is_dir():
        raise CliError(f"{what} {path} is a folder, not a file")
    if not path.parent.is_dir():
        raise CliError(f"folder {path.parent} does not exist (for {what} {path})")
    return path


def readable_file(path: Path, what: str = "input") -> Path:
    if not path.exists():
        raise CliError(f"{what} {path}: no such file")
    if path.is_dir():
        raise CliError(f"{what} {path} is a folder, not a file")
    return path


class ExampleHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, and keeps the line breaks of the examples in each command's epilog."""


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)
