"""Turn loopml's reference/analysis frames into the narrow, typed frames NannyML expects.

The reference is prepared once; the analysis arrives in pieces (a whole frame, or date partitions)
and each piece is prepared the same way. Everything that can go wrong with the *analysis* data
(schema drift, missing columns, no labels, unparsable values) is recorded once as a note and worked
around here, so the calculators downstream only see columns they can use. Problems with the
*reference* data are a broken contract upstream and raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from loopml.spec import ProblemSpec

# Working column names: prefixed so they can never collide with a user's feature name.
Y_TRUE = "__loopml_y_true"
Y_PRED = "__loopml_y_pred"
Y_PROBA = "__loopml_y_pred_proba"
TS = "__loopml_timestamp"
LATENCY = "__loopml_latency_ms"
REQUEST_SHARE = "__loopml_request_share"  # 1 / rows in the API request the row came with


class Notes:
    """Messages said once however many pieces repeat them; counts add up across pieces."""

    def __init__(self) -> None:
        self._text: dict[str, None] = {}
        self._counts: dict[str, int] = {}

    def add(self, text: str) -> None:
        """Say ``text`` (once, however often it is added)."""
        self._text.setdefault(text, None)

    def count(self, template: str, n: int) -> None:
        """``template`` holds ``{n}``; rendered once with the total."""
        if n:
            self._counts[template] = self._counts.get(template, 0) + n
            self._text.setdefault(template, None)

    def messages(self) -> list[str]:
        """The messages in the order first said, counts filled in."""
        return [t.format(n=self._counts[t]) if t in self._counts else t for t in self._text]


@dataclass
class Reference:
    """The reference data as NannyML reads it (narrow frame, encoded outputs) and what the analysis
    pieces are checked against; the ``seen``/``valued``/``has_`` fields grow as pieces arrive."""

    frame: pd.DataFrame
    features: list[str]  # monitored: present in the reference
    continuous: list[str]
    categorical: list[str]
    y_pred_proba: str | dict[str, str] | None
    timestamp: str | None  # TS when the reference has the spec's timestamp
    missing_rate: dict[str, float]
    categories: dict[str, set[str]]
    non_null: dict[str, int]
    seen_features: set[str] = field(default_factory=set)  # analysis pieces that had the column
    valued_features: set[str] = field(default_factory=set)  # ... with at least one value
    has_predictions: bool = False
    has_labels: bool = False


def proba_column(frame: pd.DataFrame, cls: object) -> str | None:
    """The ``y_pred_proba_<class>`` column of a class, tolerating ``1.0`` vs ``1`` spellings."""
    candidates = [f"y_pred_proba_{cls}"]
    if isinstance(cls, float) and cls.is_integer():
        candidates.append(f"y_pred_proba_{int(cls)}")
    return next((c for c in candidates if c in frame.columns), None)


def prepare_reference(reference: pd.DataFrame, spec: ProblemSpec, classes: list | None, notes: Notes) -> Reference:
    """The labelled reference rows ready for NannyML; ValueError when the reference lacks labels,
    predictions or (for a classifier) the classes and their probabilities."""
    _require_reference(reference, spec, classes)
    reference = reference[reference[spec.target].notna()]
    features = []
    for f in spec.feature_names:
        if f in reference.columns:
            features.append(f)
        else:
            notes.add(f"feature {f!r} is missing from the reference data: it is not monitored")
    timestamp = TS if spec.timestamp and spec.timestamp in reference.columns else None
    if spec.timestamp and timestamp is None:
        notes.add(f"timestamp column {spec.timestamp!r} is missing from the reference data")
    reference = _clean_rows(reference, spec, timestamp, notes, "reference")
    ref = _frame(reference, features, timestamp, spec, notes, "reference")
    ref[Y_TRUE] = _encode_labels(reference[spec.target], spec, classes).to_numpy()
    ref[Y_PRED] = _encode_labels(reference["y_pred"], spec, classes).to_numpy()
    proba = _reference_proba(reference, ref, spec, classes)
    categorical = [f for f in features if f in spec.categorical]
    return Reference(
        frame=ref,
        features=features,
        continuous=[f for f in features if f in spec.numeric],
        categorical=categorical,
        y_pred_proba=proba,
        timestamp=timestamp,
        missing_rate={f: float(ref[f].isna().mean()) for f in features},
        categories={f: set(ref[f].dropna().astype(str).unique()) for f in categorical},
        non_null={f: int(ref[f].notna().sum()) for f in features},
    )


def prepare_piece(
    piece: pd.DataFrame, ref: Reference, spec: ProblemSpec, classes: list | None, notes: Notes
) -> pd.DataFrame:
    """One piece of analysis data as a narrow frame with every reference feature (absent -> NaN)."""
    timestamp = ref.timestamp if spec.timestamp and spec.timestamp in piece.columns else None
    if ref.timestamp and timestamp is None:
        notes.add(f"timestamp column {spec.timestamp!r} is missing from the analysis data: chunking by row count")
    piece = _clean_rows(piece, spec, timestamp, notes, "analysis")
    present = [f for f in ref.features if f in piece.columns]
    for f in ref.features:
        if f not in piece.columns:
            notes.add(f"schema change: feature {f!r} is missing from the analysis data: it is not monitored")
    out = _frame(piece, present, timestamp, spec, notes, "analysis")
    for f in ref.features:
        if f not in out.columns:
            out[f] = np.nan if f in ref.continuous else pd.Series([None] * len(out), dtype="object")
    ref.seen_features.update(present)
    ref.valued_features.update(f for f in present if out[f].notna().any())
    _outputs(piece, out, spec, classes, ref, notes)
    if spec.target in piece.columns:
        out[Y_TRUE] = _encode_labels(piece[spec.target], spec, classes).to_numpy()
        ref.has_labels = ref.has_labels or bool(out[Y_TRUE].notna().any())
    else:
        out[Y_TRUE] = np.nan
    if "latency_ms" in piece.columns:
        out[LATENCY] = pd.to_numeric(piece["latency_ms"], errors="coerce").to_numpy()
        rows = pd.to_numeric(piece["request_rows"], errors="coerce") if "request_rows" in piece.columns else None
        out[REQUEST_SHARE] = (1.0 / rows.where(rows > 0)).to_numpy() if rows is not None else 1.0
    return out


def _require_reference(reference: pd.DataFrame, spec: ProblemSpec, classes: list | None) -> None:
    missing = [c for c in (spec.target, "y_pred") if c not in reference.columns]
    if missing:
        raise ValueError(f"reference data lacks required column(s) {missing}")
    if spec.is_classifier and not classes:
        raise ValueError(f"task {spec.task!r} needs the list of classes")
    if reference[spec.target].notna().sum() == 0:
        raise ValueError(f"reference data has no labels in {spec.target!r}")


def _clean_rows(
    source: pd.DataFrame, spec: ProblemSpec, timestamp: str | None, notes: Notes, name: str
) -> pd.DataFrame:
    """Parse the timestamp and drop rows without one: every later frame is built row-aligned to this."""
    if timestamp is None or spec.timestamp is None:
        return source.reset_index(drop=True)
    ts = source[spec.timestamp]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        parsed = pd.to_datetime(ts, errors="coerce")
        notes.count(f"{name}: {{n}} timestamp value(s) could not be parsed as dates", int(parsed.isna().sum() - ts.isna().sum()))
        source = source.assign(**{spec.timestamp: parsed})
    if getattr(source[spec.timestamp].dt, "tz", None) is not None:  # NannyML and periods want naive UTC
        source = source.assign(**{spec.timestamp: source[spec.timestamp].dt.tz_convert("UTC").dt.tz_localize(None)})
    keep = source[spec.timestamp].notna()
    if not keep.all():
        notes.count(f"{name}: {{n}} row(s) without a timestamp were left out", int((~keep).sum()))
        source = source[keep]
    return source.reset_index(drop=True)


def _frame(
    source: pd.DataFrame, features: list[str], timestamp: str | None, spec: ProblemSpec, notes: Notes, name: str
) -> pd.DataFrame:
    """A narrow frame with only the columns NannyML needs; copy-on-write keeps this cheap."""
    out = source[features].copy(deep=False) if features else pd.DataFrame(index=source.index)
    for f in features:
        out[f] = _coerce(out[f], f, f in spec.numeric, notes, name)
    if timestamp is not None and spec.timestamp is not None:
        out[TS] = source[spec.timestamp]
    return out


def _coerce(col: pd.Series, name: str, numeric: bool, notes: Notes, where: str) -> pd.Series:
    """Make a column's dtype match what the spec says it is, recording any schema change."""
    if numeric:
        if pd.api.types.is_bool_dtype(col):
            return col.astype("float64")
        if pd.api.types.is_numeric_dtype(col):
            return col
        parsed = pd.to_numeric(col, errors="coerce")
        notes.add(f"schema change: numeric feature {name!r} arrived as {col.dtype} in the {where} data; converted to numbers")
        notes.count(f"{where}: {{n}} value(s) of {name!r} could not be parsed as numbers and count as missing",
                    int(parsed.isna().sum() - col.isna().sum()))  # fmt: skip
        return parsed.astype("float64")
    if pd.api.types.is_string_dtype(col):
        # one string dtype whatever the reader gave: NannyML's chi2 fails on pandas' NA-backed "string"
        # dtype (what awswrangler returns from S3), and works on the default "str" and on object
        return col if str(col.dtype) in ("str", "object") else col.astype("str")
    # NannyML decides categorical vs continuous partly by dtype, and a reference of "True"/"1" strings
    # must meet True/1 in the analysis as the same category: categories are compared as strings.
    # pandas' string dtype, not object: NannyML 0.13.1's chi2 fails on object columns under pandas 3
    return col.map(str, na_action="ignore").astype("str")


def _reference_proba(
    reference: pd.DataFrame, ref: pd.DataFrame, spec: ProblemSpec, classes: list | None
) -> str | dict[str, str] | None:
    if spec.task == "regression":
        return None
    if spec.task == "binary":
        if "y_pred_proba" not in reference.columns:
            raise ValueError("reference data lacks 'y_pred_proba' for a binary classifier")
        ref[Y_PROBA] = reference["y_pred_proba"].to_numpy()
        return Y_PROBA
    proba: dict[str, str] = {}
    for cls in classes or []:
        col = proba_column(reference, cls)
        if col is None:
            raise ValueError(f"reference data lacks the probability column y_pred_proba_{cls}")
        ref[f"{Y_PROBA}_{cls}"] = reference[col].to_numpy()
        proba[str(cls)] = f"{Y_PROBA}_{cls}"
    return proba


def _outputs(
    piece: pd.DataFrame, out: pd.DataFrame, spec: ProblemSpec, classes: list | None, ref: Reference, notes: Notes
) -> None:
    """Copy the model outputs into the working frame, encoded as NannyML wants them."""
    has_pred = "y_pred" in piece.columns
    if not has_pred:
        notes.add("analysis data has no 'y_pred' column: performance cannot be estimated")
    out[Y_PRED] = _encode_labels(piece["y_pred"], spec, classes).to_numpy() if has_pred else np.nan
    ref.has_predictions = ref.has_predictions or has_pred
    if spec.task == "binary":
        out[Y_PROBA] = piece["y_pred_proba"].to_numpy() if "y_pred_proba" in piece.columns else np.nan
    elif spec.task == "multiclass":
        for cls in classes or []:
            col = proba_column(piece, cls)
            out[f"{Y_PROBA}_{cls}"] = piece[col].to_numpy() if col else np.nan


def _encode_labels(values: pd.Series, spec: ProblemSpec, classes: list | None) -> pd.Series:
    """Binary -> 1.0 for the positive class (classes[-1]) else 0.0; multiclass -> str labels; NaN kept."""
    if spec.task == "regression":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    assert classes
    if spec.task == "binary":
        return (values == classes[-1]).astype("float64").where(values.notna())
    # Multiclass: NannyML matches label values against the y_pred_proba dict keys, which are strings.
    return values.map(str, na_action="ignore")
