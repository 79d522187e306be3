"""The CLI's contract with a person: bad input is one line naming what and where, exit code 2, no
traceback and nothing written; read-only commands show what is in the store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from loopml.cli.main import main
from loopml.registry.registry import Registry
from loopml.storage import LocalStore


@pytest.fixture
def project(tmp_path: Path, make_raw, car_loan):
    """A spec whose data.train is a small CSV in tmp_path; returns (spec path, train frame, folder)."""
    train = car_loan[0].head(300)
    train.to_csv(tmp_path / "train.csv", index=False)
    raw = make_raw()
    raw["data"] = {"train": "train.csv", "new": "new.csv"}
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, train, tmp_path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _with_data(project, name: str) -> str:
    path, _, folder = project
    raw = yaml.safe_load(path.read_text())
    raw["data"]["train"] = name
    (folder / "other.yaml").write_text(yaml.safe_dump(raw))
    return str(folder / "other.yaml")


@pytest.mark.parametrize("case", ["missing_target_csv", "missing_target_parquet", "missing_file", "empty_file",
                                  "csv_named_parquet", "header_only"])
def test_train_checks_the_data_before_any_flow_starts(project, capsys, case):
    path, train, folder = project
    if case == "missing_target_csv":
        train.drop(columns=["repaid"]).to_csv(folder / "d.csv", index=False)
        name, expect = "d.csv", "missing column 'repaid' (the target)"
    elif case == "missing_target_parquet":
        train.drop(columns=["repaid"]).to_parquet(folder / "d.parquet", index=False)
        name, expect = "d.parquet", "missing column 'repaid' (the target)"
    elif case == "missing_file":
        name, expect = "nowhere.csv", "no such file"
    elif case == "empty_file":
        (folder / "d.csv").write_bytes(b"")
        name, expect = "d.csv", "empty file (0 bytes)"
    elif case == "csv_named_parquet":
        train.to_csv(folder / "d.parquet", index=False)
        name, expect = "d.parquet", "not a Parquet file (no PAR1 marker); it looks like CSV text: name it .csv"
    else:
        train.head(0).to_csv(folder / "d.csv", index=False)
        name, expect = "d.csv", "no rows (a header only)"
    store = folder / "store"
    started = time.monotonic()
    code, out, err = run_cli(capsys, "train", "--spec", _with_data(project, name), "--store", str(store))
    line = _one_line_error(code, err)
    assert line.startswith("loopml train: ") and str(folder / name) in line and expect in line, line
    assert time.monotonic() - started < 10  # seconds, not a flow's start-up
    assert not store.exists() and not (folder / ".metaflow").exists()  # nothing written


def test_train_checks_the_store_is_writable(project, capsys):
    path, _, folder = project
    (folder / "a-file").write_text("not a folder")
    code, _, err = run_cli(capsys, "train", "--spec", str(path), "--store", str(folder / "a-file" / "store"))
    assert "is not a folder" in _one_line_error(code, err)


def test_train_against_a_missing_bucket_fails_before_training(project, capsys, s3_bucket):
    path, _, _ = project
    code, _, err = run_cli(capsys, "train", "--spec", str(path), "--store", "s3://no-such-bucket-here/store")
    line = _one_line_error(code, err)
    assert "store s3://no-such-bucket-here/store is not reachable or not writable" in line
    assert "no such bucket 'no-such-bucket-here'" in line


@pytest.mark.parametrize("command", [["score", "--start", "2019-01-01"], ["monitor", "--start", "2019-01-01"]])
def test_score_and_monitor_without_a_champion_say_so(project, capsys, command):
    path, train, folder = project
    train.drop(columns=["repaid"]).to_csv(folder / "new.csv", index=False)
    store = folder / "store"
    code, _, err = run_cli(capsys, *command, "--spec", str(path), "--store", str(store))
    assert f"no champion in store {store}" in _one_line_error(code, err)


def test_as_of_must_be_an_iso_time(project, capsys):
    path, _, folder = project
    code, _, err = run_cli(capsys, "monitor", "--spec", str(path), "--start", "2019-01-01", "--as-of", "yesterday",
                           "--store", str(folder / "store"))
    assert "--as-of 'yesterday' is not an ISO time" in _one_line_error(code, err)


def test_a_bad_deadline_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--deadline", "soon"])
    assert exit_.value.code == 2 and "'soon' is not a number of seconds" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_and_exit_1_with_the_traceback_behind_debug(capsys, monkeypatch, tmp_path):
    import loopml.cycle.status

    def broken(store):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(loopml.cycle.status, "status", broken)
    code, _, err = run_cli(capsys, "status", "--store", str(tmp_path))
    assert code == 1 and err.strip() == ("loopml status: internal error: ZeroDivisionError: a bug "
                                         "(run again with --debug for the traceback)")
    code, _, err = run_cli(capsys, "status", "--store", str(tmp_path), "--debug")
    assert code == 1 and "Traceback (most recent call last)" in err and "ZeroDivisionError: a bug" in err


def test_the_deadline_stops_an_in_process_command(capsys, monkeypatch, tmp_path):
    import loopml.cycle.status

    def stalls(store):
        time.sleep(30)  # e.g. an endpoint that accepts connections and never answers

    monkeypatch.setattr(loopml.cycle.status, "status", stalls)
    started = time.monotonic()
    code, _, err = run_cli(capsys, "status", "--store", str(tmp_path), "--deadline", "0.5")
    assert code == 124 and time.monotonic() - started < 5
    assert err.strip() == "loopml status: the deadline of 0.5 s passed; stopped (a flow it started was stopped too)"


def test_the_deadline_can_come_from_the_environment(capsys, monkeypatch, tmp_path):
    import loopml.cycle.status

    monkeypatch.setattr(loopml.cycle.status, "status", lambda store: time.sleep(30))
    monkeypatch.setenv("LOOPML_DEADLINE_SECONDS", "0.3")
    code, _, err = run_cli(capsys, "status", "--store", str(tmp_path))
    assert code == 124 and "the deadline of 0.3 s passed" in err


# ----------------------------------------------------------------------------- read-only commands
@pytest.fixture
def two_versions(tmp_path, trained):
    store = LocalStore(tmp_path / "store")
    first = trained.register(store, promote=True)
    second = trained.register(store, promote=False)
    Registry(store).promote(second, why="second is better")
    return store, first, second


def test_status_shows_the_champion_and_its_metrics(two_versions, capsys):
    store, first, second = two_versions
    code, out, _ = run_cli(capsys, "status", "--store", str(store.root))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"store: {store.uri}  versions: [{first}, {second}]"
    assert lines[1].startswith(f"champion: v{second} random_forest ") and " roc_auc=" in lines[1]
    assert "open alerts: 0" in lines
    code, out, _ = run_cli(capsys, "status", "--store", str(store.root), "--json")
    s = json.loads(out)
    assert s["champion"]["version"] == second and s["versions"] == [first, second]


def test_ledger_lists_every_alias_move_in_order(two_versions, capsys):
    store, first, second = two_versions
    code, out, _ = run_cli(capsys, "ledger", "--store", str(store.root))
    assert code == 0
    moves = [ln.split("[")[0].split()[-3:] for ln in out.splitlines()]
    assert moves == [["None", "->", str(first)], [str(first), "->", str(second)]]
    assert out.splitlines()[-1].endswith("second is better")


def test_compare_marks_what_differs(two_versions, capsys, trained):
    store, first, second = two_versions
    code, out, _ = run_cli(capsys, "compare", str(first), str(second), "--store", str(store.root))
    assert code == 0
    rows = {ln.split()[0].rstrip("*"): ln for ln in out.splitlines()[1:]}
    assert rows["family"].split()[1:] == ["random_forest", "random_forest"]
    assert not rows["family"].split()[0].endswith("*")  # same family: not marked
    assert f"{trained.evaluation.metrics['roc_auc']:.4f}" in rows["test.roc_auc"]


def test_compare_of_an_unknown_version_is_one_line(two_versions, capsys):
    store, first, _ = two_versions
    code, _, err = run_cli(capsys, "compare", str(first), "99", "--store", str(store.root))
    assert "99" in _one_line_error(code, err)


def test_a_numeric_declared_text_column_is_reported_once(make_raw, car_loan):
    from loopml.data import DataError, validate
    from loopml.spec import parse_spec

    spec = parse_spec(make_raw())
    df = car_loan[0].head(50).assign(car_value="a lot")
    with pytest.raises(DataError) as err:
        validate(df, spec)
    assert "'car_value' is numeric in the spec but has 50 non-numeric values" in str(err.value)
    assert "entirely missing" not in str(err.value)


def test_the_store_is_untouched_by_a_failed_check(project, capsys):
    path, train, folder = project
    store = folder / "store"
    LocalStore(store).put("marker", b"x")
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    train.drop(columns=["car_value"]).to_csv(folder / "d.csv", index=False)
    code, _, err = run_cli(capsys, "train", "--spec", _with_data(project, "d.csv"), "--store", str(store))
    assert "missing column 'car_value'" in _one_line_error(code, err)
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_train_prints_its_test_metrics_and_warnings(monkeypatch, capsys, project):
    """The end of `loopml train`: warnings, held-out metrics, the version (the flow itself is faked here;
    tests/integration runs the real one)."""
    import loopml.runtime.flowrun

    class Data:
        warnings = [{"kind": "id_like", "column": "ticket", "message": "feature 'ticket' looks like an identifier"}]
        metrics = {"roc_auc": 0.9712, "accuracy": 0.9}
        version = 3
        decision = {"promoted": True, "gates": {"reasons": []}}

    class Run:
        data, pathspec = Data(), "TrainFlow/1"

    monkeypatch.setattr(loopml.runtime.flowrun, "run_flow", lambda *a, **k: Run())
    path, _, folder = project
    code, out, _ = run_cli(capsys, "train", "--spec", str(path), "--store", str(folder / "store"))
    assert code == 0
    assert out.splitlines() == ["warning: feature 'ticket' looks like an identifier",
                                "test metrics (held-out split): roc_auc=0.9712 accuracy=0.9000",
                                "registered version 3 from TrainFlow/1; promoted: True"]


def test_runs_lists_a_run_whose_results_cannot_be_read(monkeypatch, capsys):
    """A run whose datastore moved (or that failed, or is still running) is listed with the reason,
    instead of ending `loopml runs` in a traceback."""
    import loopml.cycle.status

    class Data:
        data_fingerprint, params, metrics, version = "f" * 64, {"C": 1.0}, {"roc_auc": 0.9}, 2

        class winner:  # noqa: N801
            family = "linear"

    class Good:
        pathspec, created_at, successful, data = "TrainFlow/2", "2026-01-02", True, Data()

    class Moved:
        pathspec, created_at = "TrainFlow/1", "2026-01-01"

        @property
        def successful(self):
            raise FileNotFoundError("/old/place/.metaflow/TrainFlow/1/end/5/0.data.json")

    monkeypatch.setattr(loopml.cycle.status, "training_runs", lambda limit: [loopml.cycle.status.run_row(Good()),
                                                                     loopml.cycle.status.run_row(Moved())])
    code, out, err = run_cli(capsys, "runs")
    assert code == 0, err
    good, moved = out.splitlines()
    assert good.startswith("TrainFlow/2  ok  v2  linear") and "roc_auc=0.9000" in good
    assert moved == ("TrainFlow/1  ?  (cannot read its results: FileNotFoundError: "
                     "/old/place/.metaflow/TrainFlow/1/end/5/0.data.json)")
