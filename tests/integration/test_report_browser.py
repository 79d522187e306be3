"""The monitoring report, rendered by a real browser (headless Chromium): the page draws its plots
offline and a screenshot is kept in the test's output folder for people to look at."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nannyml as nml
import numpy as np
import pytest
from PIL import Image

from loopml.monitoring import evaluate_alerts, monitor, render_report
from loopml.spec import parse_spec

FEATURES = {"car_value": "numeric", "salary_range": "categorical", "debt_to_income_ratio": "numeric",
            "loan_length": "numeric", "driver_tenure": "numeric"}  # fmt: skip


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def _chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=15000"]  # fmt: skip
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _browser()
    nml.disable_usage_logging()
    ref, ana, targets = nml.load_synthetic_car_loan_dataset()
    ana = ana.merge(targets, on="id").iloc[:40_000:4].reset_index(drop=True)  # drift in the last quarter
    rng = np.random.default_rng(0)
    ana["latency_ms"], ana["request_rows"] = rng.gamma(4, 5, len(ana)), 1
    spec = parse_spec({
        "name": "car-loan", "task": "binary", "target": "repaid", "timestamp": "timestamp", "id": "id",
        "features": [{"name": n, "type": t} for n, t in FEATURES.items()],
        "metric": {"name": "roc_auc", "threshold": 0.95}, "data": {"train": "unused.csv"},
        "constraints": {"p99_latency_ms": 80, "budget": {"monthly_usd": 100}},
        "monitoring": {"chunk_size": 1000},
    })  # fmt: skip
    result = monitor(ref.iloc[:20_000], ana, spec, [0.0, 1.0])
    html = render_report(result, spec, "Car loan: monitoring", "v3", evaluate_alerts(result, spec))
    page = tmp_path / "report.html"
    page.write_text(html)

    dom = _chromium(browser, "--dump-dom", page.as_uri()).stdout
    # plotly.js draws an <svg class="main-svg"> per figure only when its script ran in the page
    for title in ("Performance per chunk", "Multivariate drift", "API latency per chunk", "Estimated cost per day",
                  "Reliability on the reference"):
        assert title in dom, title
    assert dom.count('class="main-svg"') >= 2 * 6  # every figure drawn (plotly draws two svg layers each)

    shot = tmp_path / "report.png"
    _chromium(browser, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2400)
    pixels = np.asarray(image)
    assert (pixels < 128).mean() > 0.005, "the page rendered (mostly) blank"
    assert len(np.unique(pixels)) > 50, "the page has no plots or text, only flat colour"
