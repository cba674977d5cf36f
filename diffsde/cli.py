"""The ``diffsde`` command line as a library: ``main(argv)`` runs a command and returns its exit
status, ``parser()`` is the argparse parser (with the subcommands plugins add)."""

from ._cli import main as main, parser as parser
