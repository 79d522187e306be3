"""MonitorFlow: NannyML over the champion's reference set and the scored predictions (+ late labels):
estimated and realized performance, drift, data quality; a report, alerts and a retraining decision.

Scheduled daily on Step Functions or Argo (``@schedule``); with no dates it looks at the last 30 days.
"""

import os

from flowbase import LoopmlFlow
from metaflow import Parameter, card, current, schedule, step


@schedule(daily=True)
class MonitorFlow(LoopmlFlow):
    start_date = Parameter("start", help="first date of the window, YYYY-MM-DD (default: end - 30 days)", default="")
    end_date = Parameter("end", help="last date of the window, inclusive (default: yesterday, UTC)", default="")
    as_of = Parameter("as-of", help="the run's notion of 'now' (ISO time) when replaying history", default="")
    topic = Parameter("topic", help="SNS topic ARN for alerts (default: LOOPML_SNS_TOPIC_ARN)", default="")
    retrain_on = Parameter("retrain-on", help="when the decision is to retrain, start TrainFlow here: "
                           "'step-functions' (the deployed TrainFlow) or '' (record the decision only); default $LOOPML_RETRAIN_ON",
                           default=os.environ.get("LOOPML_RETRAIN_ON", ""))

    @step
    def start(self):
        from datetime import timedelta

        from loopml.scoring import parse_date, yesterday

        self.spec = self.load_spec()
        self.last = parse_date(self.end_date, "--end") if self.end_date else yesterday()
        self.first = parse_date(self.start_date, "--start") if self.start_date else self.last - timedelta(days=30)
        self.next(self.monitor)

    @card(type="blank", id="monitoring")
    @step
    def monitor(self):
        from datetime import UTC, datetime
        from functools import partial

        from loopml.jobs import run_monitoring, start_step_functions_retraining
        from loopml.reporting import monitoring_card
        from loopml.settings import get_settings
        from loopml.storage import from_uri

        now = datetime.fromisoformat(self.as_of) if self.as_of else datetime.now(UTC)
        store = from_uri(self.store)
        if self.retrain_on not in ("", "step-functions"):
            raise ValueError(f"--retrain-on must be 'step-functions' or empty, got {self.retrain_on!r}")
        on_retrain = partial(start_step_functions_retraining, store, self.spec) if self.retrain_on else None
        run = run_monitoring(store, self.spec, self.first, self.last, now=now,
                             topic_arn=self.topic or get_settings().sns_topic_arn, on_retrain=on_retrain)
        self.run_id, self.version, self.alerts, self.decision = run.run_id, run.version, run.alerts, run.decision
        self.report_url = run.report_url
        self.chunks = run.results["chunks"]
        for component in monitoring_card(run):
            current.card["monitoring"].append(component)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    MonitorFlow()
