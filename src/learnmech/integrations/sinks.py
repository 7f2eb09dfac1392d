"""Where probe rows go: TensorBoard, Weights & Biases, MLflow, the learnmech store.

A row is ``{"step", "observable", "value"}`` (what :class:`~learnmech.train.Recorder`
records). Each sink imports its package when it is created, and says which to install
when it is missing.
"""

from __future__ import annotations

import importlib
import math
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from learnmech.errors import UserError

__all__ = ["MLflowSink", "Sink", "StoreSink", "TensorBoardSink", "WandbSink"]

Rows = Sequence[dict[str, Any]]


def _need(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"this sink needs the {package!r} package: pip install {package}") from None


def _by_step(rows: Rows) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for r in rows:
        out.setdefault(int(r["step"]), {})[str(r["observable"])] = float(r["value"])
    return out


class Sink:
    """Base class: :meth:`log` receives new rows as they are recorded."""

    def log(self, rows: Rows) -> None:
        raise NotImplementedError

    def close(self, **info: Any) -> None:
        pass


class TensorBoardSink(Sink):
    """Scalars in a TensorBoard event file under ``logdir`` (``torch.utils.tensorboard``;
    needs the ``tensorboard`` package)."""

    def __init__(self, logdir: str | Path) -> None:
        _need("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(logdir))

    def log(self, rows: Rows) -> None:
        for r in rows:
            self.writer.add_scalar(str(r["observable"]), float(r["value"]), int(r["step"]))

    def close(self, **info: Any) -> None:
        self.writer.flush()
        self.writer.close()


class WandbSink(Sink):
    """A Weights & Biases run, offline by default (``mode="offline"``: files under ``dir``,
    upload later with ``wandb sync``); one ``wandb.log`` per step."""

    def __init__(
        self,
        project: str = "learnmech",
        *,
        mode: str = "offline",
        dir: str | Path | None = None,
        **init: Any,
    ) -> None:
        wandb = _need("wandb", "wandb")
        kw = {"project": project, "mode": mode, **init}
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
            kw["dir"] = str(dir)
        self.run = wandb.init(**kw)

    def log(self, rows: Rows) -> None:
        for step, values in sorted(_by_step(rows).items()):
            self.run.log(values, step=step)

    def close(self, **info: Any) -> None:
        self.run.finish()


_MLFLOW_KEY = re.compile(r"[^0-9A-Za-z_\-./ ]")


class MLflowSink(Sink):
    """An MLflow run, by default in a local SQLite file (``tracking_uri="mlflow.db"``, no
    server; MLflow 3 keeps its old ``./mlruns`` folder store in maintenance mode). A path
    ending in ``.db`` becomes ``sqlite:///<path>``, any other path a folder store, and a
    URI (``http://…``, ``sqlite:///…``) is used as given. Metric keys keep MLflow's
    allowed characters (others become ``_``); non-finite values are not logged."""

    def __init__(
        self,
        tracking_uri: str | Path = "mlflow.db",
        *,
        experiment: str = "learnmech",
        run_name: str | None = None,
    ) -> None:
        mlflow = _need("mlflow", "mlflow-skinny")
        uri = str(tracking_uri)
        if "://" not in uri:
            path = Path(uri).resolve()
            uri = f"sqlite:///{path}" if path.suffix == ".db" else path.as_uri()
        self.client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self._metric = importlib.import_module("mlflow.entities").Metric

    def log(self, rows: Rows) -> None:
        now = int(time.time() * 1000)
        metrics = [
            self._metric(
                _MLFLOW_KEY.sub("_", str(r["observable"])), float(r["value"]), now, int(r["step"])
            )
            for r in rows
            if math.isfinite(float(r["value"]))
        ]
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def close(self, **info: Any) -> None:
        self.client.set_terminated(self.run_id)


_NAME = re.compile(r"[^0-9A-Za-z_.-]+")


class StoreSink(Sink):
    """The run in learnmech's DuckDB store, as study ``tracked-run``: it appears in
    ``learnmech runs list`` and ``learnmech report RUN`` draws its curves.

    Rows are kept in memory and written in one transaction at :meth:`close` (with the
    report, unless ``report=False``), so a crash leaves no half-written run.
    """

    def __init__(
        self,
        store: str | Path | None = None,
        *,
        name: str = "run",
        config: dict[str, Any] | None = None,
        report: bool = True,
    ) -> None:
        from learnmech.lab.store import DEFAULT_STORE

        self.store = Path(store) if store is not None else Path(DEFAULT_STORE)
        clean = _NAME.sub("-", str(name)).strip("-") or "run"
        self.run_id = f"{clean[:40]}-{uuid.uuid4().hex[:8]}"
        self.config = dict(config or {})
        self.report = report
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.time()
        self.report_path: Path | None = None

    def log(self, rows: Rows) -> None:
        self.rows.extend(dict(r) for r in rows)

    def close(self, **info: Any) -> None:
        import numpy as np

        from learnmech.lab.provenance import provenance
        from learnmech.lab.runner import render_report
        from learnmech.lab.store import Store
        from learnmech.lab.tracked import TRACKED
        from learnmech.records import Curve, TrialResult

        series: dict[str, dict[int, float]] = {}
        for r in self.rows:
            series.setdefault(str(r["observable"]), {})[int(r["step"])] = float(r["value"])
        curves = [
            Curve(
                obs, "step", np.array(sorted(pts), float), np.array([pts[s] for s in sorted(pts)])
            )
            for obs, pts in sorted(series.items())
        ]
        device = str(info.get("device", "cpu"))
        wall = time.time() - self.t0
        trial = TrialResult(self.run_id, {"run": self.run_id}, 0, "ok", None, wall, curves, device)
        prov = provenance() | {"tracked": True, "device": device, "device_used": device}
        config = {
            k: (v if isinstance(v, int | float | str | bool) or v is None else str(v))
            for k, v in (self.config | info.get("config", {})).items()
        }
        with Store(self.store) as st:
            st.begin_run(self.run_id, TRACKED, config, "tracked", 1, prov)
            st.add_trials(self.run_id, TRACKED, [trial], device)
            st.link_trials(self.run_id, [self.run_id])
            st.finish_run(self.run_id, "done", None, wall, None)
            if self.report:
                self.report_path = render_report(st, self.run_id)
                st.finish_run(self.run_id, "done", None, wall, str(self.report_path))
