"""`python run.py --stack local` exactly as the README's quickstart runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_default_run_trains_on_the_shipped_sample(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(tmp_path / "zenml"),
        "ZENML_ANALYTICS_OPT_IN": "false",
    }
    result = subprocess.run(
        [sys.executable, "run.py", "--stack", "local"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,  # a guard against a hang, not a speed test (see benchmarks/)
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    match = re.search(
        r"Model pneumonia_classifier version 1: in-split test AUC ([\d.]+), accuracy ([\d.]+), "
        r"sensitivity ([\d.]+), specificity ([\d.]+) at threshold ([\d.]+)",
        output,
    )
    assert match, output[-4000:]
    auc, accuracy, sensitivity, specificity, threshold = map(float, match.groups())
    # 62 real test images of whole patients; the shipped config reaches ~0.99 AUC here.
    assert auc >= 0.85 and accuracy >= 0.75 and sensitivity >= 0.8, match.group(0)
    assert 0.0 < threshold < 1.0
    assert "not a medical device" in output
    assert re.search(r"mlflow ui --backend-store-uri 'sqlite:///\S+mlflow.db'", output)
    assert "zenml login --local" in output
