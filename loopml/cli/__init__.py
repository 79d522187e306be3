"""The ``loopml`` command: argparse (:mod:`.main`) and printing (:mod:`.show`) only; every command calls one
function of :mod:`loopml.api` (a release step: one of :mod:`loopml.release`)."""
