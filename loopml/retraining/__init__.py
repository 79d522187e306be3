"""Closing the loop: one claim per retraining window (:mod:`.claims`), the newer window's data
(:mod:`.data`), the challenger gate (:mod:`.challenge`) and starting a deployed TrainFlow
(:mod:`.triggers`)."""
