"""The newer window a retraining trains on."""

from __future__ import annotations

from datetime import date

import pandas as pd

from loopml.data import fingerprint, load_frame, validate
from loopml.scoring.labels import labelled_window
from loopml.spec import ProblemSpec
from loopml.storage import Store
from loopml.storage.layout import retraining_input_key


# -------------------------------------------------------------------------------------------- data
def retraining_data(store: Store, spec: ProblemSpec, until: date) -> str:
    """The newer window to retrain on: the original training data plus every labelled scored row up to
    ``until``, written to the store as a Parquet input.

    The key holds the data's fingerprint and the object is created only if absent, so an earlier
    version's data is never overwritten (labels that arrive later make a new file) and stays
    reproducible.
    """
    base = validate(load_frame(spec.data.train), spec, source=spec.data.train)
    recent = labelled_window(store, spec, None, until)
    if not recent.empty:
        recent = validate(recent[[c for c in base.columns if c in recent.columns]], spec, source="labelled predictions")
        if spec.id:
            base[spec.id] = base[spec.id].astype(str)
    combined = pd.concat([base, recent], ignore_index=True) if not recent.empty else base
    key = retraining_input_key(until, fingerprint(combined))
    if not store.exists(key):
        store.write_parquet(key, combined)
    return store.url(key)
