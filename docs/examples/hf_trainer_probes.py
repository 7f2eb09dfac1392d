"""learnmech in a HuggingFace training run: μP, a coord check, then curvature and gradient
noise probes inside the ``Trainer``, logged to TensorBoard and the learnmech store.

    python docs/examples/hf_trainer_probes.py --out /tmp/hf-run [--steps 40]

Walked through in docs/tutorial-your-training-run.md. Everything is built from configs
with random weights; nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers as tf

from learnmech.hparams import coord_check, parametrize
from learnmech.integrations import StoreSink, TensorBoardSink, hf_callback
from learnmech.train import GradientNoiseProbe, GradNorm, SharpnessProbe, UpdateRMS

VOCAB, CONTEXT, BASE = 64, 16, 32


def gpt2(width: int, tied: bool = False) -> tf.GPT2LMHeadModel:
    """A small GPT-2 at ``width``; eager attention, as the tutorial's numbers were
    recorded ("sdpa" works too: learnmech differentiates it on PyTorch's math backend);
    untied embeddings (``tied=True`` is μP's shared readout, whose coord check fails
    here, see the doc)."""
    cfg = tf.GPT2Config(
        vocab_size=VOCAB,
        n_positions=CONTEXT,
        n_embd=width,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
        tie_word_embeddings=tied,
    )
    return tf.GPT2LMHeadModel(cfg)


def lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """What learnmech's probes evaluate: next-token cross-entropy on the logits."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))


def make(width: int, seed: int, lr: float = 3e-3):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = gpt2(width)
    p = parametrize(
        model,
        "mup",
        base=gpt2(BASE),
        optimizer="adamw",
        lr=lr,
        weight_decay=0.01,
        no_decay=["*bias", "role:vector"],
        init="fixed",  # HF initialises every width with std 0.02
    )
    return model, p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--cc-widths", default="128,256,512", help="coord-check widths")
    a = ap.parse_args()
    tf.logging.set_verbosity_error()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (256, CONTEXT), generator=g)  # stand-in for your data
    probe = ids[:16]

    # 1. μP is width-stable before you spend compute: coordinates flat in width (at
    # widths 32–128 the readout's update still shrinks as width^−0.32: a finite-width
    # effect of its nonzero init, gone by 128–512, where the check passes)
    cc = coord_check(
        lambda w, s: (lambda m, p: (m, p.optimizer()))(*make(w, s)),
        [int(w) for w in a.cc_widths.split(",")],
        ({"input_ids": probe}, probe),
        steps=3,
        seeds=2,
        loss_fn=lm_loss,
    )
    print("coord check:", "pass" if cc.passed else "fail", *cc.diagnose(), sep="\n  ")

    # 2. train the target width in a Trainer with probes attached
    model, p = make(a.width, 0)
    opt = p.optimizer()
    batch = ({"input_ids": probe}, probe)
    cb = hf_callback(
        [
            GradNorm(),
            UpdateRMS(),
            SharpnessProbe(lm_loss, batch, opt, every=10),  # λ_max(P⁻¹H) vs 38/η
            GradientNoiseProbe(lm_loss, {"input_ids": ids[:64]}, ids[:64], every=10),
        ],
        sinks=[TensorBoardSink(a.out / "tb"), StoreSink(a.out / "runs.duckdb", name="gpt2-mup")],
    )
    args = tf.TrainingArguments(
        output_dir=str(a.out / "trainer"),
        max_steps=a.steps,
        per_device_train_batch_size=32,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        lr_scheduler_type="constant",
        logging_steps=10,
    )
    data = [{"input_ids": r, "labels": r} for r in ids]
    tf.Trainer(
        model=model, args=args, train_dataset=data, callbacks=[cb], optimizers=(opt, None)
    ).train()

    rec = cb.session.recorder
    for name in ("grad_norm", "sharpness_ratio", "b_simple"):
        steps, values = rec.series(name)
        print(f"{name:16s}", ", ".join(f"{s}: {v:.3g}" for s, v in zip(steps, values, strict=True)))
    print("report:", cb.session.sinks[1].report_path)


if __name__ == "__main__":
    main()
