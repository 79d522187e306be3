"""The scheduled cycle in process (loopml.cycle.cycle.run_cycle): in order, and a re-run changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from loopml.cycle.cycle import describe, replay_as_of, run_cycle
from loopml.registry.registry import Registry
from loopml.storage import MemoryStore, from_uri

DAY = date(2019, 3, 31)


def test_a_cycle_scores_monitors_retrains_once_and_then_cools_down(trained, spec, tmp_path):
    # no model meets the threshold: the decision is to retrain, and the challenger fails its gates (cooldown)
    losing = spec.model_copy(update={"metric": spec.metric.model_copy(update={"threshold": 0.999}),
                                     "retraining": spec.retraining.model_copy(update={"min_improvement": 1.0})})
    store = from_uri(str(tmp_path / "store"))  # a folder: training reads the window's data back by its URI
    trained.register(store)
    registry = Registry(store)
    as_of = replay_as_of(DAY)
    assert as_of == datetime(2019, 4, 1, tzinfo=UTC)

    first = run_cycle(store, losing, DAY, days=90, window_days=90, as_of=as_of)
    assert first.scored.rows > 0 and min(first.scored.partitions) == "2019-01-01"
    assert first.monitoring.results["rows"] == first.scored.rows  # monitoring saw what was just scored
    assert first.monitoring.decision["retrain"]
    r = first.retraining
    assert r["started"] and r["promoted"] is False and "fails its own gates" in r["why"]
    challenger = registry.get(r["version"])
    assert challenger.meta["registered_at"] == as_of.isoformat()  # its age counts from the replayed "now"
    assert challenger.meta["data"]["uri"] == r["data"] and f"retrain-until-{DAY}-" in r["data"]
    ledger, alerts = registry.ledger(), store.list("monitoring/alerts/")

    again = run_cycle(store, losing, DAY, days=90, window_days=90, as_of=as_of + timedelta(hours=1))
    assert registry.versions() == [1, r["version"]] and registry.ledger() == ledger
    assert again.retraining["version"] == r["version"] and again.monitoring.new_alerts == 0
    assert store.list("monitoring/alerts/") == alerts and len(store.list("monitoring/decisions/")) == 1

    # another window (a re-scored day; whole months keep the chunks comparable), a day later: cooling down
    other = DAY - timedelta(days=1)
    later = run_cycle(store, losing, other, window_days=89, as_of=as_of + timedelta(days=1))
    assert later.monitoring.decision["retrain"] and not later.retraining["started"]
    assert "cooldown_days=7" in later.retraining["why"] and registry.versions() == [1, r["version"]]
    lines = describe(later.summary())
    assert lines[0].startswith(f"{other}: scored") and "no retraining: " in lines[-1]


def test_a_day_without_data_is_an_empty_window_not_an_all_clear(trained, spec):
    store = MemoryStore()
    trained.register(store)
    run_cycle(store, spec, date(2019, 3, 31), days=7, window_days=7, retrain=False)
    empty = run_cycle(store, spec, date(2021, 1, 1), window_days=7, retrain=False)
    assert empty.scored.rows == 0 and empty.monitoring.empty
    assert "EMPTY" in describe(empty.summary())[0] and "no_data" in describe(empty.summary())[1]


def test_the_cycle_monitors_whole_chunk_periods(trained, spec):
    # a Wednesday cycle looking back 28 days would cut a week at each end: it monitors the four whole weeks
    # before it (Monday 2019-02-25 .. Sunday 2019-03-24); the week still running waits for a later cycle
    weekly = spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"chunk_period": "W",
                                                                                      "min_chunk_rows": 1})})
    store = MemoryStore()
    trained.register(store)
    wednesday = date(2019, 3, 27)
    run = run_cycle(store, weekly, wednesday, days=60, window_days=28, retrain=False).monitoring
    assert run.results["window"] == {"start": "2019-02-25", "end": "2019-03-24"}
    chunks = run.results["chunks"]
    assert [c["chunk"] for c in chunks] == ["2019-02-25/2019-03-03", "2019-03-04/2019-03-10",
                                            "2019-03-11/2019-03-17", "2019-03-18/2019-03-24"]
    assert "2019-02-25..2019-03-24" in describe(run_cycle(store, weekly, wednesday, window_days=28,
                                                          retrain=False).summary())[0]
    # the next days ask for the same whole weeks: the same run, nothing recorded twice
    thursday = run_cycle(store, weekly, wednesday + timedelta(days=1), window_days=28, retrain=False).monitoring
    assert thursday.run_id == run.run_id and thursday.new_alerts == 0
    # a window inside one running week: that week so far, from its Monday
    inside = run_cycle(store, weekly, wednesday, window_days=2, retrain=False).monitoring
    assert inside.results["window"] == {"start": "2019-03-25", "end": "2019-03-27"}
