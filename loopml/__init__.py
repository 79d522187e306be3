"""loopml: the ML lifecycle as one loop (train with Metaflow, register, serve, score, monitor with NannyML, retrain).

The command line (``loopml --help``) and this API do the same things::

    import loopml

    trained = loopml.train("project.yaml", store="s3://bucket/loopml")      # TrainFlow
    loopml.score("project.yaml", "2026-01-01", "2026-01-07", store=...)     # ScoreFlow
    loopml.monitor("project.yaml", "2026-01-01", "2026-01-07", store=...)   # MonitorFlow (NannyML)
    loopml.run_cycle("project.yaml", "2026-01-07", store=...)             # score ▶ monitor ▶ decide ▶ retrain
    loopml.promote(3, why="better on last week's labels", store=...)
    loopml.rollback(why="latency regression", store=...)
    loopml.status(store=...)

Only these names are public (``__all__``); the modules behind them may change. Importing ``loopml`` imports
no ML library: each function imports what it needs when called.
"""

from loopml.api import (
    MonitorResult,
    ScoreResult,
    TrainResult,
    monitor,
    promote,
    rollback,
    run_cycle,
    score,
    status,
    train,
)

__all__ = ["train", "score", "monitor", "run_cycle", "promote", "rollback", "status", "TrainResult",
           "ScoreResult", "MonitorResult", "__version__"]

__version__ = "0.1.0"
