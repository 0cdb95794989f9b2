"""Shared bits of the command-line entry points: logging set-up and one-line failures."""
from __future__ import annotations

import argparse
import logging
import sys


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("transformers", "urllib3", "filelock", "huggingface_hub")  # INFO chatter of the model libraries


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = 2) -> int:
    """Print one `error:` line per problem to stderr and return the exit code (2 = user mistake)."""
    for line in str(message).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    return code


class OneLineParser(argparse.ArgumentParser):
    """argparse with a usage mistake said in one `error:` line (exit 2), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
