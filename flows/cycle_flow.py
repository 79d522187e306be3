"""CycleFlow: the one scheduled cycle, in order: score ▶ monitor ▶ retrain (when decided) ▶ end.

This is the flow to deploy on a schedule (``step-functions create`` / ``argo-workflows create``):
monitoring can never run before its day is scored, and retraining is a step of the same run, so it
runs on AWS Batch or Kubernetes like the others. ``@project`` names the deployment
(``loopml.<branch>.CycleFlow``): deploy staging with ``--branch staging``, prod with
``--production``, a second project with its own ``--branch``, and they never collide.
ScoreFlow, MonitorFlow and TrainFlow stay for running one step by hand; they carry no schedule.
"""

from flowbase import LoopmlFlow
from metaflow import Parameter, current, project, schedule, step


@project(name="loopml")
@schedule(daily=True)
class CycleFlow(LoopmlFlow):
    day = Parameter("day", help="the day to score, YYYY-MM-DD (default: yesterday, UTC)", default="")
    # counts as text: loopml starts flows through metaflow.Runner, which passes every value as a string
    days_text = Parameter("days", help="how many days, ending on --day, to score", default="1")
    window_text = Parameter("window", help="how many days, ending on --day, monitoring looks at", default="28")
    as_of = Parameter("as-of", help="the cycle's 'now' (ISO time) when replaying history (default: now)", default="")
    topic = Parameter("topic", help="SNS topic ARN for alerts (default: LOOPML_SNS_TOPIC_ARN)", default="")
    retrain_on = Parameter("retrain-on", help="when the decision is to retrain: 'cycle' trains the challenger in "
                           "this flow's retrain step; 'step-functions' / 'argo-workflows' start this project's "
                           "deployed TrainFlow instead; 'no' records the decision only", default="cycle")

    @step
    def start(self):
        from loopml.cycle.cycle import cycle_run_key, day_count
        from loopml.dates import as_of_or_now, parse_date, yesterday
        from loopml.retraining.triggers import ENGINES

        if self.retrain_on not in ("cycle", "no", *ENGINES):
            raise ValueError(f"--retrain-on must be one of cycle, no, {', '.join(ENGINES)}; got {self.retrain_on!r}")
        self.spec = self.load_spec()
        self.days, self.window = day_count(self.days_text, "--days"), day_count(self.window_text, "--window")
        self.last = parse_date(self.day, "--day") if self.day else yesterday()
        self.now = as_of_or_now(self.as_of)
        # keyed by the day, not the Metaflow run: a re-run of the same day resumes its own claims
        self.run_key = cycle_run_key(self.spec, self.last)
        self.next(self.score)

    @step
    def score(self):
        from datetime import timedelta

        from loopml.cycle.cycle import score_days
        from loopml.storage import from_uri

        self.scored = score_days(from_uri(self.store), self.spec, self.last - timedelta(days=self.days - 1), self.last)
        self.next(self.monitor)

    @step
    def monitor(self):
        from datetime import timedelta

        from loopml.cycle.cycle import monitor_window
        from loopml.settings import get_settings
        from loopml.storage import from_uri

        self.monitoring = monitor_window(from_uri(self.store), self.spec, self.last - timedelta(days=self.window - 1),
                                         self.last, self.now, topic_arn=self.topic or get_settings().sns_topic_arn)
        self.decision = self.monitoring.decision
        self.next(self.retrain)

    @step
    def retrain(self):
        from loopml.cycle.cycle import retrain_if_decided
        from loopml.retraining.triggers import deployed_name, retrainer
        from loopml.storage import from_uri

        store = from_uri(self.store)
        decided = self.decision if self.retrain_on != "no" else {"retrain": False}
        start = None
        if self.retrain_on not in ("cycle", "no"):  # this project's and branch's TrainFlow, never another's
            start = retrainer(self.retrain_on, store, self.spec,
                              deployed_name(self.retrain_on, current.project_name, current.branch_name))
        self.retraining = retrain_if_decided(store, self.spec, decided, self.last, run_key=self.run_key, now=self.now,
                                             lineage=current.pathspec, start=start)
        self.next(self.end)

    @step
    def end(self):
        from loopml.cycle.cycle import CycleResult

        self.summary = CycleResult(self.last, self.scored, self.monitoring, self.retraining).summary()


if __name__ == "__main__":
    CycleFlow()
