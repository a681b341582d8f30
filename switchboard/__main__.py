"""`python -m switchboard`: the same command line as the `switchboard` script."""

from switchboard.cli import main

main()
