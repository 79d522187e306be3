"""Moved: kept only so that old imports still work. New code imports from the modules below.

- :mod:`loopml.labels`: late labels, /feedback, the prediction log, the analysis window
- :mod:`loopml.monitoring_run`: a monitoring run recorded in the store
- :mod:`loopml.retraining`: retraining data, claims (cooldown, in flight), the challenger gate
- :mod:`loopml.triggers`: starting a deployed TrainFlow on Step Functions or Argo
- :mod:`loopml.cycle`: the scheduled cycle, in order
"""

from loopml.labels import analysis_window, attach_labels, labelled_window, load_labels, read_prediction_log
from loopml.monitoring_run import LATEST, MonitoringRun, run_monitoring
from loopml.retraining import challenge, retraining_data
from loopml.triggers import start_step_functions_retraining

__all__ = ["LATEST", "MonitoringRun", "analysis_window", "attach_labels", "challenge", "labelled_window",
           "load_labels", "read_prediction_log", "retraining_data", "run_monitoring", "start_step_functions_retraining"]
