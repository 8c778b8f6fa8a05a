"""``python -m camkit.bench ARGS`` (e.g. under ``torchrun -m camkit.bench``) is ``camkit bench ARGS``."""
import sys

from camkit.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
