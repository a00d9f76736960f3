"""``python -m gecko_distill`` → the CLI."""

from gecko_distill.cli import main

main()
