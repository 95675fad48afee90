"""Run the `ivr` command as `python -m ivr`."""

from ivr.cli import main

main()
