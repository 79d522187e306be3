"""``loopml demo``: the whole loop on NannyML's synthetic car-loan data, offline (:mod:`.data`, :mod:`.demo`)."""
