"""The loop: the scheduled cycle in order (score ▶ monitor ▶ decide ▶ retrain ▶ gate, :mod:`.cycle`), the
store-aware monitoring run that records alerts and decisions and starts retrainings
(:mod:`.monitoring_run`), its replay over a date range (:mod:`.replay`), the Metaflow cards
(:mod:`.cards`) and the read-only views for people (:mod:`.status`)."""
