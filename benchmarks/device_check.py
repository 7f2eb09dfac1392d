"""Run every study at a tiny configuration on a device and report where each really ran.

    python benchmarks/device_check.py --device cuda [--out results.json]

For each study: the verdict (tiny configurations are not meant to pass), the device the
store recorded — the device whose allocator the measurement used, so a study that
computes on the CPU is recorded as ``cpu`` even when ``cuda`` was asked for — and the
wall time. Studies whose measurement is NumPy by design (``data-spectra``, the
random-feature arm of ``scaling-laws``) are expected on ``cpu``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from learnmech.lab.runner import run_study

TINY: dict[str, dict] = {
    "wide-nets": {"widths": [64, 128], "steps": 20, "kernel_seeds": 1, "seeds": 2},
    "learning-curves": {
        "n_values": [16, 32, 64],
        "net_widths": [64, 128],
        "net_steps": 20,
        "seeds": 2,
    },
    "deep-linear": {"depths": [2], "aligned_u0": [1e-2], "random_scales": [0.3], "seeds": 2},
    "conservation": {"nets": ["relu"], "batch_sizes": [8, 16], "seeds": 2},
    "lazy-rich": {"alphas": [0.3, 3.0, 10.0, 30.0], "steps": 200, "seeds": 2},
    "scaling-laws": {
        "arms": ["gpt"],
        "gpt_widths": [8, 16, 24],
        "gpt_steps": [8, 16, 32],
        "gpt_batch": 8,
        "gpt_test_sequences": 64,
        "seeds": 2,
    },
    "edge-of-stability": {"steps": 60, "gd_lrs": [0.4], "adam_lrs": [], "seeds": 2},
    "critical-batch-size": {
        "batch_sizes": [32, 128, 1000],
        "lrs": [0.8],
        "max_steps": 200,
        "target_loss": 1.0,
        "noise_points": 2,
        "hessian_samples": 4,
        "seeds": 2,
    },
    "linear-scaling-rule": {"ks": [1, 2, 4], "rules": ["sgd_linear"], "epochs": 1.0, "seeds": 2},
    "lr-transfer": {
        "arms": ["mlp"],
        "mlp_widths": [32, 64, 128],
        "mlp_steps": 10,
        "lr_log2": [-8, -7, -6, -5, -4],
        "seeds": 2,
    },
    "universality": {
        "widths": [32, 64, 128],
        "init_widths": [64, 128, 256],
        "steps": 10,
        "init_seeds": 2,
        "seeds": 2,
    },
    "neural-collapse": {"epochs": 5, "records": 3, "seeds": 2},
    "feature-ansatz": {"steps": 20, "records": 3, "seeds": 2},
    "data-spectra": {"datasets": ["planted"], "seeds": 2},
    # the planner's sweeps and target grid (on a GPU both stack at any size; on a CPU this
    # tiny target stacks too)
    "proxy-plan": {
        "proxy_widths": [8, 16, 32],
        "target_width": 64,
        "lr_log2": [-8, -7, -6, -5, -4],
        "target_batches": [16],
        "steps": 20,
        "seeds": 2,
    },
}
#: where each study's measurements are expected when a GPU is asked for (NumPy by design:
#: data-spectra, and learning-curves' kernel-regression arms beside its GPU network arm)
EXPECTED = {"data-spectra": "cpu", "learning-curves": "cpu,{device}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None)
    ap.add_argument("--study", action="append", help="only these studies (repeatable)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for study, overrides in TINY.items():
            if args.study and study not in args.study:
                continue
            t0 = time.perf_counter()
            try:
                res = run_study(
                    study,
                    store=Path(tmp) / "s.duckdb",
                    overrides=overrides,
                    device=args.device,
                    report=False,
                )
                row = {
                    "study": study,
                    "verdict": res.verdict,
                    "device": res.device,
                    "failed_trials": len(res.failed),
                    "errors": res.failed[:2],
                }
            except Exception as err:  # report and go on: this is a survey
                row = {"study": study, "error": f"{type(err).__name__}: {err}"}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            expected = EXPECTED.get(study, "{device}").format(device=args.device)
            if args.device == "cpu":
                expected = "cpu"
            row["as_expected"] = row.get("device") == expected and not row.get("failed_trials")
            rows.append(row)
            print(json.dumps(row), flush=True)
    ok = sum(r["as_expected"] for r in rows)
    print(f"{ok}/{len(rows)} studies ran where expected on {args.device}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
