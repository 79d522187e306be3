"""MonitorFlow: NannyML over the champion's reference set and the scored predictions (+ late labels):
estimated and realized performance, drift, data quality; a report, alerts and a retraining decision.

For running by hand; with no dates it looks at the last 30 days. It carries no ``@schedule``: the one
scheduled flow is CycleFlow, which monitors only after the day is scored. A retried or re-run
MonitorFlow writes each alert, its decision and its SNS message once, and starts at most one
retraining (``--retrain-on``) per window.
"""

import os

from flowbase import LoopmlFlow
from metaflow import Parameter, card, current, project, step


@project(name="loopml")
class MonitorFlow(LoopmlFlow):
    start_date = Parameter("start", help="first date of the window, YYYY-MM-DD (default: end - 30 days)", default="")
    end_date = Parameter("end", help="last date of the window, inclusive (default: yesterday, UTC)", default="")
    as_of = Parameter("as-of", help="the run's notion of 'now' (ISO time) when replaying history", default="")
    topic = Parameter("topic", help="SNS topic ARN for alerts (default: LOOPML_SNS_TOPIC_ARN)", default="")
    retrain_on = Parameter("retrain-on", help="when the decision is to retrain, start this project's deployed "
                           "TrainFlow on 'step-functions' or 'argo-workflows'; '' records the decision only "
                           "(default $LOOPML_RETRAIN_ON)", default=os.environ.get("LOOPML_RETRAIN_ON", ""))

    @step
    def start(self):
        from datetime import timedelta

        from loopml.dates import parse_date, yesterday
        from loopml.retraining.triggers import ENGINES

        if self.retrain_on not in ("", *ENGINES):
            raise ValueError(f"--retrain-on must be one of {', '.join(ENGINES)} or empty, got {self.retrain_on!r}")
        self.spec = self.load_spec()
        self.last = parse_date(self.end_date, "--end") if self.end_date else yesterday()
        self.first = parse_date(self.start_date, "--start") if self.start_date else self.last - timedelta(days=30)
        self.next(self.monitor)

    @card(type="blank", id="monitoring")
    @step
    def monitor(self):
        from loopml.cycle.cards import monitoring_card
        from loopml.cycle.monitoring_run import run_monitoring
        from loopml.dates import as_of_or_now
        from loopml.retraining.triggers import deployed_name, retrainer
        from loopml.runtime.flowrun import flow_run_key
        from loopml.settings import get_settings
        from loopml.storage import from_uri

        now = as_of_or_now(self.as_of)
        store = from_uri(self.store)
        on_retrain = None
        if self.retrain_on:  # this project's and branch's TrainFlow: never another deployment's
            name = deployed_name(self.retrain_on, current.project_name, current.branch_name)
            on_retrain = retrainer(self.retrain_on, store, self.spec, name)
        # keyed by the run, not the attempt: a retried step resumes its own retraining claim
        run = run_monitoring(store, self.spec, self.first, self.last, now=now,
                             topic_arn=self.topic or get_settings().sns_topic_arn, on_retrain=on_retrain,
                             run_key=flow_run_key(current))
        self.run_id, self.version, self.alerts, self.decision = run.run_id, run.version, run.alerts, run.decision
        self.rows, self.new_alerts, self.notified = run.results["rows"], run.new_alerts, run.notified
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
