"""Study ``lr-transfer``: is the optimal learning rate width- (and depth-) independent?

Claims under test (Yang et al. 2022, "Tensor Programs V", §3 and Figs. 1, 3–5; REFERENCES
§4): under μP the loss-minimising learning rate η* does not move with width, and at a fixed
tuned rate wider is better; under SP with Adam η* falls as the width grows. With the
depth-μP branch multiplier 1/√L (Yang et al. 2023, "Tensor Programs VI"; Bordelon et al.
2023) η* also stays put as residual blocks are added, while without it η* falls.

* predict — η* ∝ width^c with c = 0 under μP; the shift of log₂ η* over the width range at
  most one grid step (the issue's and TP V's "within one grid step"); c < 0 under SP.
* measure — learning-rate sweeps (Adam, log₂ grid) for
  - ``mlp``: a 2-hidden-layer ReLU MLP on the 1,797 sklearn digits (training loss after a
    fixed number of minibatch steps), widths 64 … 1,024;
  - ``gpt``: the small pre-norm GPT (:class:`~learnmech.nets.GPT`) on a Zipfian Markov
    chain of order 2 (:class:`~learnmech.data.language.ZipfMarkov`, whose optimal loss is
    known in closed form), held-out loss, widths 16 … 64 (quick) or 16 … 256 (full);
  - ``depth``: a residual MLP (:class:`~learnmech.nets.ResMLP`) on digits at a fixed
    width, depths 2 … 8 (quick) or 2 … 16 (full), with and without depth-μP.

  At each arm's base size every μP (depth-μP) multiplier is 1, so the plain and scaled
  sweeps there are equal to the last bit: that sweep is measured once and used by both
  (:meth:`~learnmech.studies.base.Study.measured_as`).
* analyze — per arm and scheme, η* per seed by parabolic interpolation on the grid
  (:func:`~learnmech.hparams.optimal_lr`), then c ± SE by weighted least squares
  (:func:`~learnmech.hparams.transfer_exponent`, SE from the seeds' spread only).
* claims (95% bounds, df = seeds − 1) — μP's (and depth-μP's) fitted shift of log₂ η*
  over the size range lies within ±1 grid step (``equivalent``, TOST: a "no effect"
  claim); an optimum at the edge of the grid is censored, so a μP claim with one fails
  (the true optimum is unknown); SP's (and the unscaled depth arm's) shift lies below
  −1 step (``below``; an edge optimum there only hides drift, so it is conservative);
  the loss of the narrowest width's best rate used at the widest width is higher under
  SP than μP (paired over seeds, ``above`` 0); under μP the widest GPT beats the
  narrowest at its best rate (``above`` 0; for the MLP reported, not scored: at the tuned
  rate the digits training loss is set by minibatch noise — seed spread 0.016–0.037 at
  every width — and the width effect is z = 2.1 at full scale).

Negative control ``sp-as-mup``: the MLP arm's "μP" scheme is replaced by SP. SP's
optimum drifts, so the μP no-shift claim must fail.

Results at both scales: docs/tutorial-hparams.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch.nn import functional as F

from learnmech.claims import Claims, Estimate
from learnmech.data.language import ZipfMarkov, table_size_error
from learnmech.data.real import digits_subset
from learnmech.hparams import optimal_lr, parametrize
from learnmech.hparams.transfer import lr_sweep, transfer_claims
from learnmech.nets import GPT, MLP, ResMLP
from learnmech.records import Curve, Figure, Metric
from learnmech.report.plots import colors, legend, save_png, subplots
from learnmech.studies.base import Control, Study, StudyConfig, Sweep, Trials, Values
from learnmech.train.language import lm_loss

__all__ = ["LRTransfer", "LRTransferConfig"]

ARMS = ("mlp", "gpt", "depth")
WIDTH_SCHEMES = ("sp", "mup")
DEPTH_ARMS = ("none", "depth-mup")
#: losses above this (or non-finite) are recorded as this value and flagged as diverged
LOSS_CAP = 10.0


class LRTransferConfig(StudyConfig):
    arms: list[str] = Sweep(list(ARMS), key="arm", order=None, choices=ARMS)
    lr_log2: list[int] = Values(list(range(-11, -2)), n=5, ge=-30, le=2)
    gpt_lr_log2: list[int] = Values(list(range(-9, -2)), n=5, ge=-30, le=2)
    mlp_widths: list[int] = Sweep([32, 128, 512], key="size", n=3, ge=1)
    mlp_base: int = Field(32, ge=1)
    mlp_steps: int = Field(60, ge=1, le=100_000)
    gpt_widths: list[int] = Sweep([16, 32, 64], key="size", n=3, ge=1)
    gpt_base: int = Field(16, ge=4)
    gpt_steps: int = Field(100, ge=1, le=100_000)
    gpt_depth: int = Field(2, ge=1, le=64)
    gpt_heads: int = Field(4, ge=1)
    vocab: int = Field(16, ge=2, le=1024)
    order: int = Field(2, ge=1, le=4)
    zipf: float = Field(1.5, ge=0, le=10)
    context: int = Field(16, ge=4, le=1024)
    depths: list[int] = Sweep([2, 4, 8], key="size", n=3, ge=1)
    depth_width: int = Field(64, ge=4, le=8192)
    depth_steps: int = Field(20, ge=1, le=100_000)
    batch: int = Field(32, ge=1, le=4096)
    mlp_batch: int = Field(64, ge=1, le=1797)
    data_seed: int = Field(0, ge=0)
    mup_scheme: Literal["mup", "sp"] = Field(
        "mup", description="what the 'mup' arms really use (control: sp)"
    )

    @field_validator("lr_log2", "gpt_lr_log2")
    @classmethod
    def _log2_grid(cls, v: list[int]) -> list[int]:
        if v[-1] - v[0] != len(v) - 1:
            raise ValueError("must be consecutive integers (a log2 grid)")
        return v

    @model_validator(mode="after")
    def _language_size(self) -> LRTransferConfig:
        err = table_size_error(self.vocab, self.order)
        if err:
            raise ValueError(f"vocab and order: {err}")
        return self


def _sweep(
    cfg: LRTransferConfig,
    arm: str,
    scheme: str,
    size: int,
    seeds: list[int],
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Final loss for each seed and learning rate of the grid: (seeds, rates)."""
    if scheme == "mup":
        scheme = cfg.mup_scheme
    lrs = [2.0**k for k in (cfg.gpt_lr_log2 if arm == "gpt" else cfg.lr_log2)]
    if arm in ("mlp", "depth"):
        X, Y = (t.to(device) for t in digits_subset(1797, cfg.data_seed))
        loss_fn: Any = F.cross_entropy

        def draw(gen: torch.Generator) -> Any:
            if arm == "depth":  # full batch: the optimum is not blurred by minibatch noise
                return lambda _s: (X, Y)
            n = X.shape[0]
            return lambda _s: (lambda i: (X[i], Y[i]))(
                torch.randint(0, n, (cfg.mlp_batch,), generator=gen).to(device)
            )

        def evaluate(m: torch.nn.Module) -> float:
            with torch.no_grad():
                return float(F.cross_entropy(m(X), Y))

    else:
        lang = ZipfMarkov(cfg.vocab, cfg.order, cfg.zipf, seed=cfg.data_seed)
        train = lang.sample(8192, cfg.context + 1, seed=cfg.data_seed + 1).to(device)
        test = lang.sample(512, cfg.context + 1, seed=cfg.data_seed + 2).to(device)
        loss_fn = lm_loss

        def draw(gen: torch.Generator) -> Any:
            def batch(_s: int) -> Any:
                b = train[torch.randint(0, train.shape[0], (cfg.batch,), generator=gen).to(device)]
                return b[:, :-1], b[:, 1:]

            return batch

        def evaluate(m: torch.nn.Module) -> float:
            with torch.no_grad():  # positions with a full context only
                return float(lm_loss(m(test[:, :-1])[:, cfg.order - 1 :], test[:, cfg.order :]))

    def build(lr: float, seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        if arm == "mlp":
            model: torch.nn.Module = MLP(64, size, 2, 10, parameterization="standard", seed=seed)
            with torch.device("meta"):
                base: torch.nn.Module = MLP(64, cfg.mlp_base, 2, 10, parameterization="standard")
            p = parametrize(model, scheme, base=base, lr=lr)
        elif arm == "gpt":
            model = GPT(cfg.vocab, size, cfg.gpt_depth, cfg.gpt_heads, cfg.context, seed=seed)
            with torch.device("meta"):
                base = GPT(cfg.vocab, cfg.gpt_base, cfg.gpt_depth, cfg.gpt_heads, cfg.context)
            p = parametrize(model, scheme, base=base, lr=lr)
        else:
            model = ResMLP(64, cfg.depth_width, size, 10, seed=seed)
            with torch.device("meta"):
                base = ResMLP(64, cfg.depth_width, cfg.depths[0], 10)
            depth = None if scheme == "none" else scheme
            p = parametrize(model, "mup", base=base, lr=lr, depth=depth)
        model.to(device)
        return model, p.optimizer()

    steps = {"mlp": cfg.mlp_steps, "gpt": cfg.gpt_steps, "depth": cfg.depth_steps}[arm]
    batches = lambda seed: draw(torch.Generator().manual_seed(seed + 7919))  # noqa: E731
    loss = lr_sweep(lrs, build, batches, loss_fn, steps, evaluate, cap=LOSS_CAP, seeds=seeds)
    return np.array(lrs), loss


class LRTransfer(Study):
    name = "lr-transfer"
    title = "Learning-rate transfer across width (μP vs SP) and depth (depth-μP)"
    summary = "μP keeps the optimal learning rate fixed as width grows; SP's drifts"
    pillar = "hyperparameter theories"
    Config = LRTransferConfig
    controls = (
        Control(
            "sp-as-mup",
            {"arms": ["mlp"], "mup_scheme": "sp"},
            ("mlp_mup_shift_log2",),
            "the 'μP' MLP arm is really SP: its optimum drifts with width",
        ),
    )
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"seeds": 3},
        "full": {
            "seeds": 3,
            "lr_log2": list(range(-13, -1)),
            "gpt_lr_log2": list(range(-11, -1)),
            "mlp_widths": [32, 64, 128, 256, 512, 1024],
            "gpt_widths": [16, 32, 64, 128, 256],
            "gpt_steps": 300,
            "depths": [2, 4, 8, 16],
            "mlp_steps": 100,
        },
    }

    def trial_config(self, cfg: StudyConfig, point: dict[str, Any]) -> dict[str, Any]:
        """``mup_scheme`` changes only the "mup" arms: the others' trials are re-used."""
        full = super().trial_config(cfg, point)
        if point.get("scheme") != "mup":
            full.pop("mup_scheme", None)
        return full

    @staticmethod
    def _bases(cfg: LRTransferConfig) -> dict[str, int]:
        """Each arm's base size: there every μP (depth-μP) multiplier is 1."""
        return {"mlp": cfg.mlp_base, "gpt": cfg.gpt_base, "depth": cfg.depths[0]}

    def grid(self, cfg: LRTransferConfig) -> list[dict[str, Any]]:
        arms = (
            ("mlp", WIDTH_SCHEMES, cfg.mlp_widths),
            ("gpt", WIDTH_SCHEMES, cfg.gpt_widths),
            ("depth", DEPTH_ARMS, cfg.depths),
        )
        return [
            {"arm": arm, "scheme": s, "size": z}
            for arm, schemes, sizes in arms
            if arm in cfg.arms
            for s in schemes
            for z in sizes
        ]

    def measured_as(self, cfg: LRTransferConfig, point: dict[str, Any]) -> dict[str, Any]:
        """The scaled scheme's sweep is the plain scheme's, bitwise, at the arm's base size
        (``tests/studies/test_lr_transfer.py``) and wherever the sp-as-mup control makes
        "μP" SP: measured once, as the plain scheme."""
        plain = {"mup": "sp", "depth-mup": "none"}.get(point["scheme"])
        at_base = point["size"] == self._bases(cfg)[point["arm"]]
        if plain and (at_base or (plain == "sp" and cfg.mup_scheme == "sp")):
            return point | {"scheme": plain}
        return point

    def predict(self, cfg: LRTransferConfig) -> list[Curve]:
        out = []
        if "gpt" in cfg.arms:
            h = ZipfMarkov(cfg.vocab, cfg.order, cfg.zipf, seed=cfg.data_seed).entropy_rate
            out.append(
                Curve(
                    "gpt_optimal_loss",
                    "width",
                    np.array(cfg.gpt_widths, float),
                    np.full(len(cfg.gpt_widths), h),
                )
            )
        return out

    def measure(
        self, cfg: LRTransferConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        lrs, loss = _sweep(cfg, point["arm"], point["scheme"], int(point["size"]), seeds, device)
        return {
            seed: [
                Curve("loss", "lr", lrs, row),
                Curve("diverged", "lr", lrs, (row >= LOSS_CAP).astype(float)),
            ]
            for seed, row in zip(seeds, loss, strict=True)
        }

    def analyze(self, cfg: LRTransferConfig, theory: list[Curve], trials: Trials) -> dict:
        """(arm, scheme) → size → (lrs, losses[seed, lr]) with each seed's optimum."""
        out: dict[tuple[str, str], Any] = {}
        for arm, ta in trials.by("arm").items():
            for scheme, ts in ta.by("scheme").items():
                tab = {}
                for size, tz in ts.by("size").items():
                    lrs, loss = tz.stack("loss")
                    opts = [optimal_lr(lrs, row) for row in loss]
                    tab[int(size)] = {"lrs": lrs, "loss": loss, "seeds": tz.seeds, "opts": opts}
                out[(arm, scheme)] = tab
        return out

    def claims(self, cfg: LRTransferConfig, s: dict) -> list[Metric]:
        out = Claims()
        for (arm, scheme), tab in s.items():
            if len(tab) >= 3:
                opts = {z: tab[z]["opts"] for z in tab}
                out += transfer_claims(
                    f"{arm}_{scheme}",
                    opts,
                    transfers=scheme in ("mup", "depth-mup"),
                    what="depth" if arm == "depth" else "width",
                )
        for arm in ("mlp", "gpt"):
            out += self._transfer_claims(s, arm)
        return out

    def _transfer_claims(self, s: dict, arm: str) -> list[Metric]:
        """Log-loss gaps (losses span decades across the grid), paired over seeds."""
        out = Claims()
        gaps: dict[str, np.ndarray] = {}
        for scheme in WIDTH_SCHEMES:
            tab = s.get((arm, scheme), {})
            if len(tab) < 2:
                return out
            small, large = tab[min(tab)], tab[max(tab)]
            if small["seeds"] != large["seeds"]:
                return out
            cs, cl = np.log(small["loss"]), np.log(large["loss"])
            i = np.argmin(cs, axis=1)  # the narrowest width's best grid rate, per seed
            gaps[scheme] = cl[np.arange(len(i)), i] - cl.min(1)
            out.reported(
                f"{arm}_{scheme}_transfer_gap",
                Estimate.of(gaps[scheme]),
                description=f"log loss at width {max(tab)} with width {min(tab)}'s best "
                f"grid rate, minus width {max(tab)}'s best log loss",
            )
            if scheme == "mup":
                better = Estimate.of(cs.min(1) - cl.min(1))
                desc = (
                    f"best log loss at width {min(tab)} minus at width {max(tab)} (μP: wider "
                    "is better at its tuned rate)"
                )
                if arm == "gpt":
                    out.above(
                        f"{arm}_mup_wider_is_better",
                        better,
                        0.0,
                        strict=True,
                        description=desc,
                    )
                else:
                    out.reported(
                        f"{arm}_mup_wider_is_better",
                        better,
                        description=desc + "; reported: minibatch noise dominates here",
                    )
        if set(gaps) == set(WIDTH_SCHEMES):
            out.above(
                f"{arm}_transfer_gap_sp_minus_mup",
                Estimate.paired(gaps["sp"], gaps["mup"]),
                0.0,
                strict=True,
                description="the transferred rate costs SP more than μP (log loss, paired "
                "over seeds)",
            )
        return out

    def figures(self, cfg: LRTransferConfig, s: dict, outdir: Path) -> list[Figure]:
        rows = [(a, WIDTH_SCHEMES) for a in ("mlp", "gpt") if a in cfg.arms]
        if "depth" in cfg.arms:
            rows.append(("depth", DEPTH_ARMS))
        fig, axes = subplots(len(rows), 2, figsize=(8.0, 3.2 * len(rows)), squeeze=False)
        for r, (arm, schemes) in enumerate(rows):
            for c, scheme in enumerate(schemes):
                ax = axes[r, c]
                tab = s.get((arm, scheme), {})
                cs = colors(len(tab))
                for i, size in enumerate(sorted(tab)):
                    x, y = tab[size]["lrs"], tab[size]["loss"].mean(0)
                    what = "depth" if arm == "depth" else "width"
                    ax.plot(x, y, "o-", ms=3, color=cs[i], label=f"{what} {size}")
                    ax.axvline(optimal_lr(x, y).lr, color=cs[i], lw=0.8, ls=":")
                ax.set(xscale="log", yscale="log", xlabel="learning rate (Adam)", ylabel="loss")
                ax.set_title(f"{arm}: {scheme}", fontsize=9)
                ax.set_ylim(top=min(ax.get_ylim()[1], LOSS_CAP))
                legend(ax, fontsize=6)
        caption = (
            "Loss against learning rate, coloured by width (rows: MLP on digits, GPT on a "
            "Zipfian Markov chain) or depth (residual MLP), mean over seeds; dotted lines mark "
            "each curve's interpolated optimum. Left: SP (or no depth scaling); right: μP "
            "(or depth-μP)."
        )
        return [Figure(save_png(fig, outdir / "lr-transfer.png"), caption)]
