"""Dependency direction (DESIGN.md): the vocabulary imports nothing of learnmech, measure
does not import train, report does not import studies, and nothing but the command line
chooses a matplotlib backend."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(stmt: str) -> set[str]:
    code = (
        f"import sys; {stmt}; "
        "print('\\n'.join(m for m in sys.modules if m.startswith('learnmech')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    ("stmt", "forbidden"),
    [
        ("import learnmech.records", {"learnmech.lab", "learnmech.studies", "learnmech.claims"}),
        ("import learnmech.measure.hessian", {"learnmech.train", "learnmech.studies"}),
        ("import learnmech.measure.gradients", {"learnmech.train", "learnmech.studies"}),
        ("import learnmech.report.html", {"learnmech.studies", "learnmech.lab.runner"}),
        ("import learnmech.report.plots", {"learnmech.studies", "learnmech.lab"}),
    ],
)
def test_import_does_not_pull_in(stmt, forbidden):
    loaded = _modules_after(stmt)
    bad = {m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert not bad, bad


def test_records_import_nothing_of_learnmech():
    assert _modules_after("import learnmech.records") == {"learnmech", "learnmech.records"}


def test_a_report_leaves_the_users_backend_alone(store_path):
    import matplotlib

    from learnmech.lab.runner import run_study

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        run_study("data-spectra", store=store_path, seeds=2, overrides={"datasets": ["planted"]})
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
