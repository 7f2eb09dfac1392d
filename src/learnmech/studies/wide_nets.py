"""Study ``wide-nets``: wide networks train like their infinite-width linearization.

Claim under test (Jacot et al. 2018; Lee et al. 2019, "Wide neural networks of any depth
evolve as linear models under gradient descent"): an MLP in NTK parameterization trained
by full-batch gradient descent on squared loss follows the kernel dynamics of its
*analytic* infinite-width NTK, with corrections that vanish as the width grows.

* predict — from the analytic NNGP/NTK only (no training): the ensemble-mean test outputs
  μ_t(x*) = Θ*Θ⁻¹(I − (I − ηΘ/n)^t)Y, their ensemble variance, and the expected train and
  test loss curves (Lee et al. 2019, eq. 13–16, discrete-time form).
* measure — ensembles of real MLPs at each width, trained in one vectorized call; the
  empirical NTK at init and after training on a subset of the train set.
* analyze — each seed's deviation from its own linearization,
  d_s = f_t,s − [f₀,s(x*) + Θ*Θ⁻¹(I − e_t)(Y − f₀,s(X))], whose mean is E[f_t] − μ_t
  with far smaller variance than f_t itself (a control variate).

Claims (one-sided 95% bounds; tolerances fixed before the run):

* at the widest width w, the ensemble-mean output error and the test-loss curve's
  largest relative error are below c·√(L/w), c = 2 (``below``). One network's NTK
  fluctuates around its limit with relative size O(√(L/w)) (Hanin & Nica 2019, Thm 1);
  ensemble means average that first-order fluctuation out, so they must lie within it.
* the per-network deviation RMS(d_s), the empirical-vs-analytic NTK error at init and
  the relative kernel change ‖K_T − K_0‖/‖K_0‖ each shrink as width^{-1/2} (Dyer &
  Gur-Ari 2020; Huang & Yau 2020): fitted exponent −½ within ½·√(L/w_min) (``slope``).
  The next-order correction is O(1/w) relative to the O(1/√w) term, i.e.
  y ∝ w^{-1/2}(1 + a/√w) with a = O(√L), which bends a log–log slope by at most
  ½·a/√w_min over widths ≥ w_min.
* finite-width prediction, a priori per width: each network's deviation d_s from the
  analytic linearization is, to leading order, the fluctuation of its own NTK at
  initialisation propagated through the GD map, p_s = (G_t[Θ̂₀,s] − G_t[Θ])(Y − f₀,s(X)),
  G_t the kernel-GD gain (``linearized.response_operators``) — computed from the network
  at init, before it trains. What p_s leaves out is the kernel's motion during training,
  O(1/w) against the O(1/√w) fluctuation (Huang & Yau 2020, the neural tangent hierarchy;
  Dyer & Gur-Ari 2020), so log(RMS d / RMS p) is 0 within c·√(L/w) at every width
  (``within``, paired over seeds by a jackknife). The leftover RMS(d − p) is scored
  against that O(1/w) rate: exponent at most −1 + ½·√(L/w_min) (``below``).
* the ensemble-mean output bias is O(1/width) (the first-order fluctuation cancels in the
  mean; Dyer & Gur-Ari 2020): it is reported with its fitted exponent (theory −1), not
  scored, because at the widths that fit on a CPU it is below the seed noise for most
  widths (the debiased estimate is 0 there).
* each exponent fit's χ² is reported (``fit``): a misfit does not widen the exponent's
  tolerance.

Negative control ``catapult``: η = 3·n/λ_max, above the linearized dynamics' 2/λ
stability edge. The linear model diverges; the real networks catapult (Lewkowycz et al.
2020) or diverge, so the loss-curve, output and init-NTK deviation claims must fail.

Regime of validity: NTK parameterization, learning rate below 2n/λ_max, widths ≫ depth.
Under standard parameterization with a width-independent learning rate the NTK diverges
with width and the kernel regime is not reached.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from learnmech.claims import LEVEL, Claims, Estimate, fit_slope, quantile
from learnmech.data.real import digits_images_regression
from learnmech.data.synthetic import sphere_regression
from learnmech.measure.ntk import empirical_ntk
from learnmech.nets.mlp import MLP
from learnmech.records import Curve, Figure, Metric
from learnmech.stats import debiased_mean_square, jackknife, mean_se
from learnmech.studies.base import Analysis, Control, Study, StudyConfig, Sweep, Trials
from learnmech.theory import linearized, stax
from learnmech.theory.kernels import mlp_kernels
from learnmech.train.ensemble import train_ensemble

__all__ = ["WideNets", "WideNetsConfig"]


class WideNetsConfig(StudyConfig):
    arch: Literal["mlp", "cnn"] = Field(
        "mlp",
        description="mlp: fully connected on the sphere; cnn: 3×3 convolutions (SAME), "
        "global average pooling and a linear readout on 8×8 digits images, against the "
        "analytic CNTK (widths are channels)",
    )
    widths: list[int] = Sweep([64, 128, 256, 512, 1024], key="width", n=2, ge=1)
    depth: int = Field(2, ge=1, le=8, description="hidden layers (convolutions for cnn)")
    activation: Literal["relu", "erf", "identity"] = "relu"
    w_std: float = Field(1.4, gt=0, le=10)
    b_std: float = Field(0.1, ge=0, le=10)
    dim: int = Field(6, ge=2, le=4096, description="input dimension")
    n_train: int = Field(32, ge=2, le=4096)
    n_test: int = Field(64, ge=2, le=4096)
    steps: int = Field(400, ge=1, le=1_000_000)
    lr_scale: float = Field(
        1.0,
        gt=0,
        le=8,
        description="learning rate as a fraction of n/λ_max(Θ) (the linear model is stable "
        "below 2)",
    )
    kernel_points: int = Field(16, ge=2, le=512, description="train points for empirical NTKs")
    kernel_seeds: int = Field(4, ge=1, le=4096, description="seeds whose empirical NTK is measured")
    ntk_draws: int = Field(
        1,
        ge=1,
        le=64,
        description="independent initialisations whose init-NTK errors each kernel seed "
        "averages (more precision for the init-error exponent without more training)",
    )
    data_seed: int = Field(0, ge=0)
    dtype: Literal["float32", "float64"] = "float32"
    tolerance_factor: float = Analysis(
        2.0, gt=0, description="c in the tolerance c·√(depth/widest width)"
    )


def _record_steps(steps: int, n: int = 30) -> list[int]:
    pts = np.unique(np.round(np.geomspace(1, steps, n)).astype(int))
    return [0, *pts.tolist()]


def _init_seed(seed: int, width: int) -> int:
    return (seed + 1) * 1_000_003 + width


def cnn_description(cfg: WideNetsConfig, width: int) -> stax.Layer:
    """The CNN arm's network: ``depth`` 3×3 convolutions (SAME padding) with the
    activation, global average pooling, a Dense(1) readout — NTK parameterization."""
    layers: list[stax.Layer] = []
    for _ in range(cfg.depth):
        layers += [
            stax.Conv(width, 3, w_std=cfg.w_std, b_std=cfg.b_std, padding="SAME"),
            stax.Activation(cfg.activation),
        ]
    return stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, cfg.w_std, cfg.b_std))


def _task(cfg: WideNetsConfig):  # type: ignore[no-untyped-def]
    if cfg.arch == "cnn":
        return digits_images_regression(cfg.n_train, cfg.n_test, seed=cfg.data_seed)
    return sphere_regression(cfg.n_train, cfg.n_test, cfg.dim, seed=cfg.data_seed)


class WideNets(Study):
    name = "wide-nets"
    title = "Wide networks train like their infinite-width linearization"
    summary = (
        "MLP ensembles vs analytic-NTK predictions of outputs, losses and kernels across widths"
    )
    pillar = "tractable limits"
    Config = WideNetsConfig
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"widths": [64, 128, 256, 512, 1024], "seeds": 16, "steps": 400},
        "full": {
            "widths": [64, 128, 256, 512, 1024, 2048, 4096],
            "seeds": 32,
            "steps": 400,
            "kernel_seeds": 8,
        },
    }
    controls = (
        Control(
            "catapult",
            {"lr_scale": 3.0, "widths": [64, 256], "seeds": 8},
            (
                "mean_output_rel_bias_sq@*",
                "test_loss_curve_max_rel_error@*",
                "deviation_from_init_ntk@*",
            ),
            "η = 3n/λ_max is above the linear model's 2n/λ_max stability edge: the "
            "linearized prediction (and the init-NTK prediction of each net's deviation "
            "from it) diverges while real networks catapult or diverge",
        ),
    )

    #: the CNN arm's sizes per scale (widths are channels): applied under --set arch=cnn
    cnn_scales: ClassVar[dict[str, dict[str, Any]]] = {
        # activations of S seeds × n images × w channels × 64 positions bound the cost
        # (memory traffic, not FLOPs): quick keeps the default suite's budget (~30 s)
        "quick": {
            "widths": [16, 32, 64, 128, 256],
            "depth": 1,
            "seeds": 8,
            "steps": 200,
            "kernel_seeds": 8,
            "ntk_draws": 8,
        },
        "full": {
            "widths": [32, 64, 128, 256, 512, 1024],
            "depth": 1,
            "seeds": 32,
            "steps": 400,
            "kernel_seeds": 16,
            "ntk_draws": 4,
        },
    }

    def config(
        self,
        scale: str = "quick",
        overrides: dict[str, Any] | None = None,
        seeds: int | None = None,
        sources: dict[str, str] | None = None,
    ) -> WideNetsConfig:
        """As every study, with the CNN arm's sizes under ``arch=cnn`` (then overrides)."""
        if (overrides or {}).get("arch") == "cnn" and scale in self.cnn_scales:
            overrides = {**self.cnn_scales[scale], **(overrides or {})}
        return super().config(scale, overrides, seeds, sources)  # type: ignore[return-value]

    @staticmethod
    def tolerance(cfg: WideNetsConfig) -> float:
        """Relative tolerance at the widest width: c·√(L/w) (Hanin & Nica 2019, Thm 1)."""
        return cfg.tolerance_factor * math.sqrt(cfg.depth / max(cfg.widths))

    @staticmethod
    def exponent_tolerance(cfg: WideNetsConfig) -> float:
        """Tolerance of a fitted −½ exponent: ½·√(L/w_min), the slope bend of the O(1/w)
        correction over widths ≥ w_min (module docstring)."""
        return 0.5 * math.sqrt(cfg.depth / min(cfg.widths))

    def setup(self, cfg: WideNetsConfig) -> dict[str, Any]:
        """Analytic kernels, the prediction and the control-variate operators."""
        task = _task(cfg)
        x, xt = task.x_train.numpy(), task.x_test.numpy()
        if cfg.arch == "cnn":
            net = cnn_description(cfg, 1)
            k_tr = stax.kernels(net, x)
            k_ts = stax.kernels(net, xt, x)
            nngp_tt = np.diag(stax.kernels(net, xt, get=("nngp",)).nngp).copy()
        else:
            kw = dict(depth=cfg.depth, activation=cfg.activation, w_std=cfg.w_std, b_std=cfg.b_std)
            k_tr = mlp_kernels(x, **kw)
            k_ts = mlp_kernels(xt, x, **kw)
            nngp_tt = np.array(
                [mlp_kernels(xt[i : i + 1], **kw).nngp[0, 0] for i in range(len(xt))]
            )
        lam_max = float(np.linalg.eigvalsh(k_tr.ntk)[-1])
        lr = cfg.lr_scale * cfg.n_train / lam_max  # mean loss: mode factor 1 − (lr/n)λ
        steps = _record_steps(cfg.steps)
        with np.errstate(over="ignore", invalid="ignore"):
            pred = linearized.predict(
                k_tr.ntk,
                task.y_train.numpy(),
                steps,
                lr=lr,
                loss="mean",
                discrete=True,
                k_test_train=k_ts.ntk,
                y_test=task.y_test.numpy(),
                nngp_train=k_tr.nngp,
                nngp_test_train=k_ts.nngp,
                nngp_test_diag=nngp_tt,
            )
            # control variates: each net's own linearization from its f₀
            gain_op, resid_op = linearized.response_operators(
                k_tr.ntk, k_ts.ntk, steps, lr / cfg.n_train
            )
        return {
            "task": task,
            "lr": lr,
            "steps": steps,
            "pred": pred,
            "gain_op": gain_op,
            "resid_op": resid_op,
            "k_train": k_tr.ntk,
        }

    def memory_bytes(self, cfg: WideNetsConfig) -> int:
        """The widest width's weights and their gradients for every seed of the stacked
        ensemble: S·2·(dim·w + (depth − 1)·w² + w) numbers (a lower bound: activations,
        the initial copy and the kernels come on top)."""
        w = max(cfg.widths)
        params = cfg.dim * w + (cfg.depth - 1) * w * w + w
        if cfg.arch == "cnn":  # 3×3 filters: 9 weights per input-output channel pair
            params = 9 * w + (cfg.depth - 1) * 9 * w * w + w
        itemsize = 8 if cfg.dtype == "float64" else 4
        return int(cfg.seeds * 2 * params * itemsize)

    def predict(self, cfg: WideNetsConfig) -> list[Curve]:
        th = self.state(cfg)
        pred = th["pred"]
        steps = np.asarray(th["steps"], dtype=float)
        angle = th["task"].test_angle.numpy()
        return [
            Curve("train_loss", "step", steps, pred.expected_train_loss),
            Curve("test_loss", "step", steps, pred.expected_test_loss),
            Curve("test_output_mean", "angle", angle, pred.test[-1, :, 0]),
            Curve("test_output_std", "angle", angle, np.sqrt(np.clip(pred.test_var[-1], 0, None))),
            Curve("test_target", "angle", angle, th["task"].y_test.numpy()[:, 0]),
        ]

    def measure(
        self, cfg: WideNetsConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        th = self.state(cfg)
        task = th["task"]
        width = int(point["width"])
        dtype = torch.float32 if cfg.dtype == "float32" else torch.float64
        dev = torch.device(device)
        x, y, xt = (t.to(dev, dtype) for t in (task.x_train, task.y_train, task.x_test))

        def net(seed: int | None = None) -> torch.nn.Module:
            if cfg.arch == "cnn":
                model = stax.network(cnn_description(cfg, width), (1, 8, 8), seed=seed, dtype=dtype)
                return model.to(dev)
            return MLP(
                cfg.dim,
                width,
                cfg.depth,
                activation=cfg.activation,
                w_std=cfg.w_std,
                b_std=cfg.b_std,
                parameterization="ntk",
                seed=seed,
                dtype=dtype,
            ).to(dev)

        models = [net(_init_seed(s, width)) for s in seeds]
        with torch.no_grad():
            f0_train = torch.stack([m(x)[:, 0] for m in models]).double().cpu().numpy()
        xk = x[: cfg.kernel_points]
        kernel_members = [i for i, s in enumerate(seeds) if s < cfg.kernel_seeds]
        # each net's empirical NTK at init on train ∪ test points, before any training:
        # its own linearization minus the analytic one is the predicted deviation
        n, y_np = cfg.n_train, task.y_train.numpy()[:, 0]
        k_init = [
            empirical_ntk(m, torch.cat([x, xt]), mode="trace").double().cpu().numpy()
            for m in models
        ]
        k0 = {i: k_init[i][: cfg.kernel_points, : cfg.kernel_points] for i in kernel_members}
        predicted = []
        for i, k in enumerate(k_init):
            gain, _ = linearized.response_operators(k[:n, :n], k[n:, :n], [cfg.steps], th["lr"] / n)
            predicted.append((gain[-1] - th["gain_op"][-1]) @ (y_np - f0_train[i]))
        res = train_ensemble(
            models,
            x,
            y,
            lr=th["lr"],
            steps=cfg.steps,
            optimizer="gd",
            x_eval=xt,
            record_every=th["steps"],
        )
        steps = np.asarray(res.steps, dtype=float)
        k_an = th["k_train"][: cfg.kernel_points, : cfg.kernel_points]
        test_y = task.y_test.numpy()[:, 0]
        out: dict[int, list[Curve]] = {}
        for i, s in enumerate(seeds):
            outs = res.eval_outputs[:, i, :, 0].double().cpu().numpy()  # (R, m)
            curves = [
                Curve("train_loss", "step", steps, res.train_loss[:, i].double().cpu().numpy()),
                Curve("test_loss", "step", steps, 0.5 * np.mean((outs - test_y) ** 2, axis=1)),
                Curve("init_train_output", "index", np.arange(cfg.n_train), f0_train[i]),
                Curve("init_ntk_deviation", "index", np.arange(cfg.n_test), predicted[i]),
            ]
            curves += [
                Curve("test_output", "step", steps, outs[:, j], series=f"{j}")
                for j in range(cfg.n_test)
            ]
            if i in kernel_members:
                final = net().to(dev)
                final.load_state_dict({k: v[i] for k, v in res.params.items()})
                kt = empirical_ntk(final, xk, mode="trace").double().cpu().numpy()
                err0 = np.linalg.norm(k0[i] - k_an) / np.linalg.norm(k_an)
                for extra in range(1, cfg.ntk_draws):  # untrained draws: init error only
                    other = net(_init_seed(s, width) + 7919 * extra)
                    ke = empirical_ntk(other, xk, mode="trace").double().cpu().numpy()
                    err0 += np.linalg.norm(ke - k_an) / np.linalg.norm(k_an)
                err0 /= cfg.ntk_draws
                change = np.linalg.norm(kt - k0[i]) / np.linalg.norm(k0[i])
                curves.append(Curve("ntk_init_error", "width", [width], [err0]))
                curves.append(Curve("kernel_change", "width", [width], [change]))
            out[s] = curves
        return out

    def analyze(self, cfg: WideNetsConfig, theory: list[Curve], trials: Trials) -> dict:
        """Per width: control-variate estimates of the output bias, per-net deviation,
        loss curves and kernel errors (each with its SE over seeds)."""
        th = self.state(cfg)
        y = th["task"].y_train.numpy()[:, 0]
        yt = th["task"].y_test.numpy()[:, 0]
        gain, mu, pred = th["gain_op"], th["pred"].test[:, :, 0], th["pred"]
        per: dict[int, dict[str, Any]] = {}
        for w, ts in trials.by("width").items():
            outs = np.stack([ts.stack("test_output", f"{j}")[1] for j in range(cfg.n_test)], 2)
            f0 = ts.stack("init_train_output")[1]  # (S, n)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                lin = outs[:, :1, :] + np.einsum("tmi,si->stm", gain, y[None] - f0)
                dev = outs - lin  # (S, T, m): deviation from each net's own linearization
                scale = np.sqrt(np.mean(mu[-1] ** 2))

                e: dict[str, Any] = {"n": dev.shape[0], "steps": ts.stack("train_loss")[0]}
                e["bias_sq"] = jackknife(
                    dev[:, -1, :], lambda d, c=scale: debiased_mean_square(d) / c**2
                )
                b2, b2_se = e["bias_sq"]  # RMS form for plots (0 where below the seed noise)
                rms = math.sqrt(max(b2, 0.0))
                e["mean_err"] = (rms, b2_se / (2 * rms) if rms > 0 else b2_se)
                e["seed_err"] = jackknife(
                    dev[:, -1, :], lambda d, scale=scale: np.sqrt(np.mean(d**2)) / scale
                )
                if len(ts.has("init_ntk_deviation")) == dev.shape[0] > 0:  # older runs lack it
                    # the deviation predicted from each net's init NTK, and what is left
                    p = ts.has("init_ntk_deviation").stack("init_ntk_deviation")[1]
                    both = np.concatenate([dev[:, -1, :], p], 1)
                    m_ = p.shape[1]
                    e["predicted_err"] = jackknife(p, lambda d, c=scale: np.sqrt(np.mean(d**2)) / c)
                    e["log_ratio"] = jackknife(
                        both,
                        lambda b, m_=m_: (
                            0.5 * np.log(np.mean(b[:, :m_] ** 2) / np.mean(b[:, m_:] ** 2))
                        ),
                    )
                    e["drift_err"] = jackknife(
                        dev[:, -1, :] - p, lambda d, c=scale: np.sqrt(np.mean(d**2)) / c
                    )
                # loss curves with the same control variate: L_s − L_lin,s
                tl_lin = 0.5 * np.mean((lin - yt) ** 2, axis=2)
                r_lin = np.einsum("tik,sk->sti", th["resid_op"], f0 - y[None])
                trl_lin = 0.5 * np.mean(r_lin**2, axis=2)
                e["test_loss_raw"] = mean_se(ts.stack("test_loss")[1])
                e["test_loss_cv"] = mean_se(ts.stack("test_loss")[1] - tl_lin)
                e["train_loss_cv"] = mean_se(ts.stack("train_loss")[1] - trl_lin)
                e["outputs_cv"] = mean_se(dev[:, -1, :])
            e["test_loss"] = (pred.expected_test_loss + e["test_loss_cv"][0], e["test_loss_cv"][1])
            e["train_loss"] = (
                pred.expected_train_loss + e["train_loss_cv"][0],
                e["train_loss_cv"][1],
            )
            e["outputs"] = (mu[-1] + e["outputs_cv"][0], e["outputs_cv"][1])
            for obs in ("ntk_init_error", "kernel_change"):
                vals = ts.has(obs).last(obs)
                if vals.size:
                    e[obs] = mean_se(vals)
            per[w] = e
        return {"per": per, "th": th}

    def claims(self, cfg: WideNetsConfig, s: dict) -> list[Metric]:
        per, th = s["per"], s["th"]
        if not per:
            return []
        out = Claims()
        wmax = max(per)
        e = per[wmax]
        df = e["n"] - 1
        tol = self.tolerance(cfg)
        out.below(
            f"mean_output_rel_bias_sq@w{wmax}",
            Estimate(*e["bias_sq"], df),
            tol**2,
            description=f"(RMS of E[f_T] − μ_T over test points / RMS μ_T)², unbiased "
            f"control-variate estimate (RMS {e['mean_err'][0]:.3g}); tolerance (2·√(L/w))²",
        )
        pred_tl = th["pred"].expected_test_loss
        # every step must be within tolerance: the largest per-step upper bound decides
        # (an intersection–union test over steps, so no multiplicity correction)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            d_tl, se_tl = e["test_loss_cv"]
            rel, rel_se = np.abs(d_tl) / pred_tl, se_tl / pred_tl
            bounds = rel + quantile(LEVEL, df) * rel_se
        k = int(np.nanargmax(bounds)) if np.isfinite(bounds).any() else 0
        out.below(
            f"test_loss_curve_max_rel_error@w{wmax}",
            Estimate(float(rel[k]), float(rel_se[k]), df),
            tol,
            description="|E[measured] − predicted| / predicted test loss at the step with "
            "the largest upper bound (control-variate estimate); every step must pass",
        )
        raw_m, raw_se = e["test_loss_raw"]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(raw_m - pred_tl) / raw_se
        out.reported(
            f"test_loss_raw_max_z@w{wmax}",
            float(np.nanmax(z)) if np.isfinite(z).any() else math.nan,
            description="max over steps of |plain seed mean − predicted| in standard "
            "errors (no control variate)",
        )
        ws = sorted(per)
        etol = self.exponent_tolerance(cfg)
        # Lee et al. (2019, Thm 2.1): sup_t |f_t − f_lin,t| and sup_t ‖Θ_t − Θ_0‖ are
        # O(w^{-1/2}): upper bounds, so the exponent must be at most −½ (+ tolerance).
        # The NTK at init fluctuates as a CLT, exactly w^{-1/2} (two-sided).
        for key, label, kind in (
            ("seed_err", "per-network deviation from its linearization", "bound"),
            ("ntk_init_error", "empirical NTK at init vs analytic", "rate"),
            ("kernel_change", "relative kernel change ‖K_T − K_0‖/‖K_0‖", "bound"),
            ("drift_err", "deviation left after the init-NTK prediction", "nth"),
        ):
            wk = [w for w in ws if key in per[w]]
            if len(wk) < 2:
                continue
            v = np.array([per[w][key][0] for w in wk], dtype=float)
            se = np.array([per[w][key][1] for w in wk], dtype=float)
            per_seed = key in ("seed_err", "drift_err")
            n_min = min(per[w]["n"] for w in wk) if per_seed else cfg.kernel_seeds
            fit = fit_slope(np.array(wk, float), v, se, df=max(n_min - 1, 1))
            name = {"seed_err": "output_deviation", "drift_err": "kernel_drift_deviation"}.get(
                key, key
            )
            desc = f"fitted log–log slope of {label} vs width"
            if kind == "nth":
                out.below(
                    f"{name}_exponent",
                    fit.exponent,
                    -1.0 + etol,
                    description=f"{desc}; theory: at most −1, the NTK moves by O(1/w) in "
                    "training (Huang & Yau 2020; Dyer & Gur-Ari 2020)",
                )
            elif kind == "rate":
                out.within(
                    f"{name}_exponent",
                    fit.exponent,
                    -0.5,
                    etol,
                    kind="slope",
                    description=f"{desc}; theory −1/2 (CLT, Hanin & Nica 2019)",
                )
            else:
                out.below(
                    f"{name}_exponent",
                    fit.exponent,
                    -0.5 + etol,
                    description=f"{desc}; theory: at most −1/2 (Lee et al. 2019, Thm 2.1)",
                )
            if fit.dof >= 1:
                out.lack_of_fit(
                    f"{name}_power_law_fit",
                    fit.chi2,
                    fit.dof,
                    description=f"{label} follows one power law of width",
                )
        # finite-width prediction: each net's deviation from the analytic linearization is,
        # to leading order, its own init NTK's fluctuation propagated through the GD map
        for w in ws:
            if "log_ratio" in per[w]:
                tw = cfg.tolerance_factor * math.sqrt(cfg.depth / w)
                out.within(
                    f"deviation_from_init_ntk@w{w}",
                    Estimate(*per[w]["log_ratio"], per[w]["n"] - 1),
                    0.0,
                    tw,
                    description="log(RMS measured deviation / RMS deviation predicted from "
                    f"each net's init NTK); predicted RMS {per[w]['predicted_err'][0]:.3g}, "
                    f"measured {per[w]['seed_err'][0]:.3g}; tolerance {cfg.tolerance_factor:g}"
                    "·√(L/w), the O(1/w) kernel drift against the O(1/√w) fluctuation",
                )
        pos = [w for w in ws if per[w]["mean_err"][0] > 0]
        if len(pos) >= 2:
            fb = fit_slope(
                np.array(pos, float),
                [per[w]["mean_err"][0] for w in pos],
                [per[w]["mean_err"][1] for w in pos],
            )
            out.reported(
                "mean_output_bias_exponent",
                fb.exponent,
                description=f"fitted slope of the ensemble-mean output bias vs width over "
                f"the {len(pos)} widths where it exceeds the seed noise (theory −1)",
            )
        return out

    def figures(self, cfg: WideNetsConfig, s: dict, outdir: Path) -> list[Figure]:
        from learnmech.report import plots

        if not s["per"]:
            return []
        return plots.wide_nets_figures(cfg, s["th"], s["per"], outdir)
