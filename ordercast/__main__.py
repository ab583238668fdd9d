"""`python -m ordercast` runs the command line."""

from ordercast.cli import main

main()
