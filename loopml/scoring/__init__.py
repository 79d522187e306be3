"""Stage 4, batch scoring: score new data with the champion (:mod:`.batch`), commit every date of a run at
once through one manifest (:mod:`.manifest`), and read scored rows back with their late labels and the
API's prediction log (:mod:`.labels`), which monitoring and retraining both join."""
