"""Stage 5, monitoring: NannyML over reference and analysis data, then alerts and a retraining decision.

Pure functions over pandas DataFrames: nothing here reads or writes the store.

- :func:`monitor` runs NannyML and returns a :class:`MonitoringResult` (per-chunk frames, figures, messages);
  :func:`monitor_stream` does the same over pieces (date partitions), holding one chunk in memory.
- :func:`align_window` moves a run's window to whole chunk periods; :func:`cycle_window` is what the
  scheduled cycle (``run-schedule``, CycleFlow, the scheduled Lambda) monitors.
- :func:`render_report` turns a result into one self-contained HTML file.
- :func:`evaluate_alerts` applies the spec's alert rules; :func:`publish_alerts` sends them to SNS.
- :func:`decide_retraining` decides, with evidence, whether to retrain.
"""

from loopml.monitoring.alerts import Alert, evaluate_alerts, publish_alerts
from loopml.monitoring.chunks import align_window, cycle_window
from loopml.monitoring.decision import Decision, decide_retraining
from loopml.monitoring.nanny import monitor, monitor_stream
from loopml.monitoring.report import render_report
from loopml.monitoring.result import MonitoringResult

__all__ = [
    "Alert",
    "Decision",
    "align_window",
    "cycle_window",
    "MonitoringResult",
    "decide_retraining",
    "evaluate_alerts",
    "monitor",
    "monitor_stream",
    "publish_alerts",
    "render_report",
]
