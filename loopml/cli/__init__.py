"""The ``loopml`` command: argparse and printing only; every command calls :mod:`loopml.api` or one core
function."""
