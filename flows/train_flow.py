"""TrainFlow: load ▶ validate ▶ split ▶ foreach candidate: tune ▶ select ▶ refit on train+valid ▶ evaluate on
the held-out test split ▶ export/register.

Thin on purpose: every step calls one function of ``loopml``. Runs locally, or unchanged with
``--with batch`` / ``--with kubernetes``. The way to train by hand; the scheduled cycle (CycleFlow)
retrains in its own step. ``@project`` gives a deployed TrainFlow the same project and branch as the
MonitorFlow that may start it (``--retrain-on``).
"""

from flowbase import LoopmlFlow
from metaflow import Parameter, card, current, project, step


@project(name="loopml")
class TrainFlow(LoopmlFlow):
    data_uri_param = Parameter("data", help="override the spec's data.train URI (e.g. a retraining window)", default="")
    until = Parameter("until", help="train on data up to this timestamp (retraining on a newer window)", default="")
    mode = Parameter("mode", help="'promote': champion if it passes the gates; 'challenger': promoted only if it "
                     "also beats the champion on recent labelled rows it held out",
                     default="promote")
    as_of = Parameter("as-of", help="the run's 'now' (ISO time) when replaying history: the version's registration "
                      "time, which its age counts from, and the retraining outcome's time (default: now)", default="")
    retraining_until = Parameter("retraining-until", help="set by a monitoring run that started this retraining: "
                                 "the claimed window (YYYY-MM-DD) whose outcome this run records", default="")

    @step
    def start(self):
        from loopml.modeling.split import make_splits
        from loopml.modeling.windows import load_training_data

        if self.mode not in ("promote", "challenger"):
            raise ValueError(f"--mode must be 'promote' or 'challenger', got {self.mode!r}")
        self.spec = self.load_spec()
        data = load_training_data(self.spec, uri=self.data_uri_param or None, until=self.until or None)
        self.data_uri, self.data_fingerprint, self.data_window = data.uri, data.fingerprint, data.window
        self.data_rows = len(data.frame)
        self.data = data
        self.splits, self.classes = make_splits(data.frame, self.spec)
        self.candidates = list(self.spec.candidates)
        self.next(self.tune, foreach="candidates")

    @step
    def tune(self):
        from loopml.modeling.tune import encode, schema_of, tune

        train = encode(self.splits.train, self.spec, self.classes)
        valid = encode(self.splits.valid, self.spec, self.classes)
        self.result = tune(self.input, train, valid, self.spec, self.classes, schema_of(self.spec, self.classes))
        self.summary = self.result.summary()
        self.next(self.select)

    @step
    def select(self, inputs):
        from loopml.modeling.select import select

        self.spec = inputs[0].spec  # re-pickled per branch (set order differs), so not byte-equal
        self.merge_artifacts(inputs, include=["splits", "classes", "data", "data_uri", "data_fingerprint",
                                              "data_window", "data_rows"])
        results = [i.result for i in inputs]
        self.selection = select([r.summary() for r in results], self.spec)
        self.winner = results[self.selection.winner]
        self.params = self.winner.params
        self.next(self.evaluate)

    @card(type="blank", id="training")
    @step
    def evaluate(self):
        from loopml.cycle.cards import training_card
        from loopml.modeling.inprocess import refit_and_evaluate

        # the served model learns from train + validation; the test split stays held out (NannyML's reference)
        self.winner, self.evaluation = refit_and_evaluate(self.winner, self.splits, self.spec, self.classes)
        self.metrics = self.evaluation.metrics
        self.warnings = self.evaluation.warnings
        for w in self.warnings:
            print(f"warning: {w['message']}")
        for component in training_card(self.selection, self.evaluation, self.spec):
            current.card["training"].append(component)
        self.next(self.end)

    @step
    def end(self):
        from datetime import date

        from loopml.dates import as_of_or_now
        from loopml.modeling.register import register_version
        from loopml.registry.registry import Registry
        from loopml.retraining.challenge import challenge
        from loopml.retraining.claims import record_outcome
        from loopml.runtime.flowrun import flow_run_key
        from loopml.storage import from_uri

        store = from_uri(self.store)
        now = as_of_or_now(self.as_of)
        # keyed by the run (the original one when resumed): a retried or resumed end registers one version
        run_key = flow_run_key(current)
        self.version, self.decision = register_version(
            Registry(store), self.spec, self.data, self.winner, self.selection, self.evaluation,
            self.classes, current.pathspec, promote=self.mode == "promote", run_key=run_key, as_of=now)
        # a challenger meets the champion on recent labelled rows it held out; the ledger says why
        self.challenge = challenge(store, self.spec, self.version, None, None) if self.mode == "challenger" else None
        if self.challenge and self.retraining_until:  # close the claim of the monitoring run that started us
            outcome = {"version": self.version, "data": self.data_uri, **self.challenge}
            record_outcome(store, date.fromisoformat(self.retraining_until), outcome, now)
        if self.challenge:
            print(f"challenger v{self.version}: {'promoted' if self.challenge['promoted'] else 'not promoted'}: "
                  f"{self.challenge['why']}")


if __name__ == "__main__":
    TrainFlow()
