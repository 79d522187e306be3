"""ScoreFlow: score a date range of new data with the champion; one Parquet partition per date.

For running by hand; with no dates it scores yesterday (UTC). It carries no ``@schedule``: the one
scheduled flow is CycleFlow, which scores before it monitors. The run commits all its dates at once
or none (see loopml.scoring.manifest); a retried step re-merges by id.
"""

from flowbase import LoopmlFlow
from metaflow import Parameter, step


class ScoreFlow(LoopmlFlow):
    start_date = Parameter("start", help="first date to score, YYYY-MM-DD (default: yesterday, UTC)", default="")
    end_date = Parameter("end", help="last date to score, inclusive (default: the start date)", default="")
    data = Parameter("data", help="override the spec's data.new URI", default="")
    replace = Parameter("replace", help="replace dates that already hold predictions instead of merging by id",
                        type=bool, default=False)

    @step
    def start(self):
        from loopml.dates import parse_date, yesterday

        self.spec = self.load_spec()
        self.first = parse_date(self.start_date, "--start") if self.start_date else yesterday()
        self.last = parse_date(self.end_date, "--end") if self.end_date else self.first
        self.next(self.score)

    @step
    def score(self):
        from loopml.scoring.batch import score_range
        from loopml.storage import from_uri

        result = score_range(from_uri(self.store), self.spec, self.first, self.last, uri=self.data or None,
                             progress=print, replace=self.replace)
        self.version, self.partitions, self.score_run = result.version, result.partitions, result.run_id
        print(f"committed {result.rows} rows into {len(result.partitions)} dates (run {result.run_id}) "
              f"with version {result.version}")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ScoreFlow()
