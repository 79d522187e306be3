"""loopml's Metaflow flows. Each file is run as a script (``python flows/train_flow.py run``), which is how
Metaflow runs, packages and deploys flows; the wheel carries this folder as ``loopml.flows`` so that
:mod:`loopml.runtime.flowrun` finds the flows wherever loopml is installed."""
