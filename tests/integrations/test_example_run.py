"""The worked example of docs/tutorial-your-training-run.md runs end to end (small)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "hf_trainer_probes.py"


def test_hf_trainer_example_records_every_probe(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    pytest.importorskip("tensorboard")
    cmd = [
        sys.executable,
        str(EXAMPLE),
        "--out",
        str(tmp_path),
        "--width",
        "32",
        "--steps",
        "10",
        "--cc-widths",
        "16,24,32",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "coord check:" in out
    steps = re.search(r"^grad_norm\s+(.*)$", out, re.M)
    assert steps and [int(s.split(":")[0]) for s in steps.group(1).split(", ")] == list(
        range(1, 11)
    )
    sharp = re.search(r"^sharpness_ratio\s+10: ([0-9.e+-]+)$", out, re.M)
    assert sharp and 0 < float(sharp.group(1)) < 1  # far below the edge at lr 3e-3
    report = Path(re.search(r"^report: (.*)$", out, re.M).group(1))
    assert report.exists() and list((tmp_path / "tb").glob("events.out.tfevents.*"))
