"""Stage 2: validation names the column and what is wrong; loading and fingerprinting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.data import DataError, build_preprocessor, fingerprint, load_frame, prepare, validate
from loopml.data.features import MISSING


@pytest.fixture
def frame(car_loan) -> pd.DataFrame:
    return car_loan[0].head(200).copy()


def _error(df, spec, **kw) -> str:
    with pytest.raises(DataError) as info:
        validate(df, spec, **kw)
    return str(info.value)


def test_valid_frame_is_coerced(frame, spec):
    out = validate(frame, spec)
    assert len(out) == len(frame)
    assert pd.api.types.is_datetime64_any_dtype(out["timestamp"])
    assert out["car_value"].dtype == float
    assert set(out["repaid_loan_on_prev_car"].unique()) <= {"True", "False"}


def test_validate_does_not_mutate_its_input(frame, spec):
    frame["car_value"] = frame["car_value"].astype(object)
    frame.loc[3, "car_value"] = "12.5"  # coerced in the output, must stay a string in the input
    before = frame.copy(deep=True)
    out = validate(frame, spec)
    pd.testing.assert_frame_equal(frame, before)
    assert out.loc[3, "car_value"] == 12.5


def test_missing_columns(frame, spec):
    msg = _error(frame.drop(columns=["driver_tenure", "repaid"]), spec)
    assert "missing columns" in msg and "driver_tenure" in msg and "repaid" in msg


def test_target_not_required_when_scoring(frame, spec):
    out = validate(frame.drop(columns=["repaid"]), spec, require_target=False)
    assert "repaid" not in out.columns


def test_non_numeric_value_in_numeric_column(frame, spec):
    frame["loan_length"] = frame["loan_length"].astype(object)
    frame.loc[5, "loan_length"] = "forty"
    msg = _error(frame, spec)
    assert "'loan_length'" in msg and "non-numeric" in msg and "forty" in msg


def test_missing_target_values(frame, spec):
    frame.loc[[1, 2], "repaid"] = np.nan
    msg = _error(frame, spec)
    assert "'repaid'" in msg and "missing in 2 rows" in msg


def test_empty_frame(frame, spec):
    with pytest.raises(DataError, match="no rows"):
        validate(frame.iloc[0:0], spec, source="train.csv")


def test_single_class_target(frame, spec):
    frame["repaid"] = 1.0
    msg = _error(frame, spec)
    assert "'repaid'" in msg and "fewer than 2 classes" in msg


def test_unparseable_timestamp(frame, spec):
    frame.loc[4, "timestamp"] = "not a date"
    msg = _error(frame, spec)
    assert "'timestamp'" in msg and "unparseable" in msg


def test_all_missing_feature(frame, spec):
    frame["driver_tenure"] = np.nan
    msg = _error(frame, spec)
    assert "'driver_tenure'" in msg and "entirely missing" in msg


def test_duplicated_ids(frame, spec):
    frame.loc[1, "id"] = frame.loc[0, "id"]
    assert "'id'" in _error(frame, spec)


def test_every_problem_is_reported_at_once(frame, spec):
    frame["driver_tenure"] = np.nan
    frame.loc[1, "repaid"] = np.nan
    msg = _error(frame.drop(columns=["car_value"]), spec, source="train.csv")
    assert msg.startswith("train.csv:")
    assert "car_value" in msg and "driver_tenure" in msg and "'repaid'" in msg


def test_fingerprint_is_stable_and_sensitive_to_one_value(frame):
    a = fingerprint(frame)
    assert a == fingerprint(frame) == fingerprint(frame.copy())
    changed = frame.copy()
    changed.loc[10, "car_value"] = changed.loc[10, "car_value"] + 1
    assert fingerprint(changed) != a
    renamed = frame.rename(columns={"car_value": "car_price"})
    assert fingerprint(renamed) != a


def test_unsupported_extension(tmp_path):
    path = tmp_path / "train.xlsx"
    path.write_bytes(b"whatever")
    with pytest.raises(DataError, match="unsupported file type"):
        load_frame(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_frame(str(tmp_path / "absent.csv"))


def test_corrupt_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="could not read parquet"):
        load_frame(str(path))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_then_validates(frame, spec, tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    loaded = load_frame(str(path))
    assert list(loaded.columns) == list(frame.columns)
    assert len(loaded) == len(frame)
    np.testing.assert_allclose(loaded["car_value"].to_numpy(), frame["car_value"].to_numpy())
    assert loaded["salary_range"].astype(str).tolist() == frame["salary_range"].astype(str).tolist()
    a, b = validate(loaded, spec), validate(frame, spec)
    pd.testing.assert_series_equal(a["repaid"], b["repaid"])
    assert (a["timestamp"] == b["timestamp"]).all()


def test_prepare_marks_missing_categoricals_and_drops_extras(frame, spec):
    df = validate(frame, spec)
    df.loc[0, "salary_range"] = None
    X = prepare(df, spec)
    assert list(X.columns) == spec.feature_names
    assert X.loc[0, "salary_range"] == MISSING
    assert X["car_value"].dtype == np.float64


def test_preprocessor_ignores_unseen_categories(frame, spec):
    X = prepare(validate(frame, spec), spec)
    pre = build_preprocessor(spec).fit(X)
    unseen = X.head(1).copy()
    unseen.loc[unseen.index[0], "salary_range"] = "a brand new range"
    out = pre.transform(unseen)
    assert out.shape == (1, pre.transform(X.head(1)).shape[1])
    assert np.isfinite(out).all()


def test_fingerprint_ignores_which_reader_made_the_frame():
    """numpy dtypes (pandas) and nullable ones (awswrangler) for the same content: one data version."""
    import pandas as pd

    from loopml.data import fingerprint

    plain = pd.DataFrame({"n": [1, 2, 3], "x": [0.5, None, 2.0], "b": [True, False, True], "s": ["a", None, "c"],
                          "t": pd.to_datetime(["2019-01-01", "2019-01-02", None])})
    nullable = plain.astype({"n": "Int64", "x": "Float64", "b": "boolean", "s": "string"})
    assert fingerprint(plain) == fingerprint(nullable)
    assert fingerprint(plain) != fingerprint(plain.assign(n=[1, 2, 4]))


# ------------------------------------------------------------------ timestamps, ids, booleans (issue 11 §1)
def _spec_with(spec, **changes):
    from loopml.spec import parse_spec

    return parse_spec({**spec.model_dump(mode="json", exclude_none=True), **changes})


def test_day_first_timestamps_are_refused_without_a_format(frame, spec):
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.strftime("%d/%m/%Y")
    msg = _error(frame, spec)
    assert "'timestamp'" in msg and "ambiguous" in msg and "timestamp_format" in msg


def test_a_timestamp_format_reads_day_first_dates(frame, spec):
    frame.loc[:, "timestamp"] = "01/02/2019"
    out = validate(frame, _spec_with(spec, timestamp_format="%d/%m/%Y"))
    assert (out["timestamp"] == pd.Timestamp("2019-02-01")).all()


def test_epoch_numbers_need_a_unit_and_never_become_1970(frame, spec):
    frame["timestamp"] = (pd.to_datetime(frame["timestamp"]) - pd.Timestamp(0)) // pd.Timedelta(seconds=1)
    msg = _error(frame, spec)
    assert "'timestamp'" in msg and "timestamp_unit" in msg
    out = validate(frame, _spec_with(spec, timestamp_unit="s"))
    assert out["timestamp"].dt.year.min() >= 2018


def test_timezone_offsets_become_naive_utc(frame, spec):
    frame.loc[:, "timestamp"] = "2019-01-01T01:00:00+02:00"
    out = validate(frame, spec)
    assert (out["timestamp"] == pd.Timestamp("2018-12-31 23:00")).all()


def test_a_null_id_is_an_error_naming_the_rows(frame, spec):
    frame["id"] = frame["id"].astype(float)
    frame.loc[[7, 9], "id"] = np.nan
    msg = _error(frame, spec)
    assert "'id'" in msg and "rows 7, 9" in msg


def test_ids_are_kept_as_the_data_gave_them():
    from loopml.data.validate import canonical_ids

    assert canonical_ids(pd.Series([60281, 7])).tolist() == ["60281", "7"]
    assert canonical_ids(pd.Series([60281.0, 7.0])).tolist() == ["60281", "7"]
    assert canonical_ids(pd.Series(["00123", "a-1"])).tolist() == ["00123", "a-1"]


def test_true_in_a_numeric_column_is_an_error_not_one(frame, spec):
    frame["car_value"] = frame["car_value"].astype(object)
    frame.loc[3, "car_value"] = True
    msg = _error(frame, spec)
    assert "'car_value'" in msg and "True/False" in msg and "rows 3" in msg
    frame["car_value"] = True
    assert "True/False" in _error(frame, spec)
