"""Probes inside a HuggingFace Trainer and a Lightning Trainer, logged to TensorBoard, W&B
(offline), MLflow (local files) and the learnmech store — each with the real package.

Every run is checked against a plain autograd recomputation of the first step: the
gradient norm the callback records is the norm of ∇L at the initial weights, and the
update it records is the first optimizer step's (the HF Trainer zeroes gradients before
``on_step_end``, where a naive callback records nothing).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from learnmech.errors import UserError
from learnmech.integrations import (
    MLflowSink,
    ProbeSession,
    StoreSink,
    TensorBoardSink,
    WandbSink,
    hf_callback,
    lightning_callback,
)
from learnmech.train import GradNorm, UpdateRMS


def _gpt2_no_dropout():  # type: ignore[no-untyped-def]
    from tests.real_models import gpt2

    return gpt2(layers=1, dtype=torch.float32, dropout=0.0)


def _first_step_grad_norm(model, ids) -> float:  # type: ignore[no-untyped-def]
    m = copy.deepcopy(model).train()
    loss = m(input_ids=ids, labels=ids).loss
    g = torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad])
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in g)))


def test_hf_trainer_records_this_steps_gradients_and_update(tmp_path):
    tf = pytest.importorskip("transformers")
    model = _gpt2_no_dropout()
    ids = torch.randint(0, 32, (4, 8), generator=torch.Generator().manual_seed(0))
    expected = _first_step_grad_norm(model, ids)
    w0 = model.transformer.h[0].mlp.c_fc.weight.detach().clone()
    data = [{"input_ids": ids[i], "labels": ids[i]} for i in range(4)]
    store = tmp_path / "runs.duckdb"
    sink = StoreSink(store, name="hf gpt2", config={"model": "gpt2-tiny"})
    cb = hf_callback([GradNorm(), UpdateRMS()], sinks=[sink])
    args = tf.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        max_grad_norm=0.0,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        lr_scheduler_type="constant",
        seed=0,
    )
    seen: dict[int, torch.Tensor] = {}

    class Grab(tf.TrainerCallback):  # what the optimizer really applied at step 1
        def on_pre_optimizer_step(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            if state.global_step == 0:
                g = [p.grad.double() for p in model.parameters() if p.grad is not None]
                seen[0] = torch.sqrt(sum((t**2).sum() for t in g))

        def on_optimizer_step(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            if state.global_step == 0:
                seen[1] = model.transformer.h[0].mlp.c_fc.weight.detach().clone()

    tf.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb, Grab()]).train()
    steps, norms = cb.session.recorder.series("grad_norm")
    assert steps == [1, 2, 3] and all(n > 0 for n in norms)
    # the probe reduces in the parameters' dtype (one fused norm over all of them): float32
    assert norms[0] == pytest.approx(float(seen[0]), rel=1e-6)
    # the Trainer normalises the summed loss by the label count before the shift
    # (num_items_in_batch: 4·8), the model's own mean by the 4·7 shifted tokens
    assert norms[0] == pytest.approx(expected * 7 / 8, rel=1e-5)  # float32 model
    name = "update_rms/transformer.h.0.mlp.c_fc.weight"
    first = float((seen[1] - w0).double().pow(2).mean().sqrt())
    assert cb.session.recorder.series(name)[1][0] == pytest.approx(first, rel=1e-6)
    # the store has the run; the report draws it
    from learnmech.lab.store import Store

    with Store(store, read_only=True) as st:
        run = [r for r in st.runs() if r["study"] == "tracked-run"]
        assert len(run) == 1 and run[0]["id"] == sink.run_id
        trial = st.trials(sink.run_id)[0]
        assert list(trial.curve("grad_norm").values) == pytest.approx(norms)
        assert st.run(sink.run_id)["config"]["model"] == "gpt2-tiny"
    assert sink.report_path is not None and sink.report_path.exists()
    assert "tracked.png" in {p.name for p in sink.report_path.parent.iterdir()}


# 8 sequences: the unbiased |G|² may come out ≤ 0, which noise_scale says
@pytest.mark.filterwarnings("ignore:noise_scale. the unbiased:RuntimeWarning")
def test_probes_in_an_hf_trainer_with_dropout_leave_the_run_unchanged(tmp_path):
    # GPT-2 with dropout 0.1: every probe on every step, and the run's weights and random
    # stream end bitwise where they end without them (the noise probe's per-example
    # dropout masks used to come from the run's own stream: weights moved by 0.017)
    tf = pytest.importorskip("transformers")
    from learnmech.train import GradientNoiseProbe, SharpnessProbe
    from tests.real_models import gpt2, lm_loss

    ids = torch.randint(0, 32, (8, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": ids[i], "labels": ids[i]} for i in range(8)]

    def run(probed: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        model = gpt2(layers=1, dtype=torch.float32, dropout=0.1)
        sgd = torch.optim.SGD(model.parameters(), lr=1e-2)  # the probe's preconditioner
        probes = [
            GradNorm(),
            UpdateRMS(),
            SharpnessProbe(lm_loss, ({"input_ids": ids[:4]}, ids[:4]), sgd, every=1),
            GradientNoiseProbe(lm_loss, {"input_ids": ids}, ids, every=1),
        ]
        args = tf.TrainingArguments(
            output_dir=str(tmp_path / f"out{probed}"),
            max_steps=3,
            per_device_train_batch_size=4,
            learning_rate=1e-2,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        cbs = [hf_callback(probes)] if probed else []
        tf.Trainer(model=model, args=args, train_dataset=data, callbacks=cbs).train()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}, torch.rand(3)

    plain, after_plain = run(False)
    probed, after_probed = run(True)
    for k, v in plain.items():
        assert torch.equal(v, probed[k]), k
    assert torch.equal(after_plain, after_probed)


# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates (their code, not ours)
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_lightning_trainer_records_this_steps_gradients(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    class Reg(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
            )

        def training_step(self, batch, idx):  # type: ignore[no-untyped-def]
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Reg()
    ref = copy.deepcopy(module.net)
    g = torch.autograd.grad(torch.nn.functional.mse_loss(ref(x), y), list(ref.parameters()))
    expected = float(torch.sqrt(sum((t.double() ** 2).sum() for t in g)))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    cb = lightning_callback([GradNorm()], sinks=[TensorBoardSink(tmp_path / "tb")])
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, loader)
    steps, norms = cb.session.recorder.series("grad_norm")
    assert steps == [1, 2, 3]
    assert norms[0] == pytest.approx(expected, rel=1e-6)
    assert cb.session.recorder.series("loss")[0] == [1, 2, 3]
    # TensorBoard wrote the scalars where we said
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("grad_norm")]
    assert [s for s, _ in got] == [1, 2, 3]
    assert got[0][1] == pytest.approx(expected, rel=1e-6)


def _rows():  # type: ignore[no-untyped-def]
    return [
        {"step": s, "observable": o, "value": v}
        for s in (1, 2)
        for o, v in (("grad_norm", 0.5 * s), ("weight_rms/fc.weight", 1.0 + s))
    ]


def test_wandb_offline_sink_writes_a_local_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = WandbSink("learnmech-test", dir=tmp_path)
    sink.log(_rows())
    # W&B commits a step's row when the next step arrives (the last one at finish): the
    # summary now holds step 1, logged as one row with both observables
    summary = dict(sink.run.summary)
    assert (summary["_step"], summary["grad_norm"], summary["weight_rms/fc.weight"]) == (
        1,
        0.5,
        2.0,
    )
    sink.close()
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0


# MLflow's SQLAlchemy store uses options SQLAlchemy 2.1 deprecates (their code, not ours)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_mlflow_sink_logs_to_a_local_sqlite_file(tmp_path):
    pytest.importorskip("mlflow")
    sink = MLflowSink(tmp_path / "mlflow.db", experiment="probes", run_name="t")
    sink.log([*_rows(), {"step": 3, "observable": "b_simple", "value": math.inf}])
    sink.close()
    hist = sink.client.get_metric_history(sink.run_id, "grad_norm")
    assert [(m.step, m.value) for m in hist] == [(1, 0.5), (2, 1.0)]
    assert sink.client.get_run(sink.run_id).info.status == "FINISHED"
    assert not sink.client.get_metric_history(
        sink.run_id, "b_simple"
    )  # inf is not a number MLflow keeps


def test_session_rejects_what_is_not_a_probe_or_a_sink():
    with pytest.raises(UserError, match="Probe instances"):
        ProbeSession([object()])  # type: ignore[list-item]
    with pytest.raises(UserError, match="Sink instances"):
        ProbeSession([GradNorm()], sinks=[object()])  # type: ignore[list-item]
    with pytest.raises(UserError, match="every"):
        ProbeSession([GradNorm()], every=0)
