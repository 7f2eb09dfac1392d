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
* compare — (i) the ensemble-mean output error, estimated with each seed's own f₀ as a
  control variate: d_s = f_t,s − [f₀,s(x*) + Θ*Θ⁻¹(I − e_t)(Y − f₀,s(X))] has mean
  E[f_t] − μ_t and far smaller variance than f_t itself; (ii) the per-network deviation
  RMS(d_s), which theory predicts shrinks as width^{-1/2} (Dyer & Gur-Ari 2020; Huang &
  Yau 2020); (iii) the empirical-vs-analytic NTK error at init and the relative kernel
  change ‖K_T − K_0‖/‖K_0‖, both predicted O(width^{-1/2}).

Regime of validity: NTK parameterization, learning rate below 2n/λ_max, widths ≫ depth.
Under standard parameterization with a width-independent learning rate the NTK diverges
with width and the kernel regime is not reached.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from learnmech.data.synthetic import sphere_regression
from learnmech.lab.records import Curve, Metric, TrialResult, failures_metric
from learnmech.measure.ntk import empirical_ntk
from learnmech.nets.mlp import MLP
from learnmech.stats import fit_power_law, jackknife, mean_se
from learnmech.studies.base import Figure, Study, StudyConfig
from learnmech.theory import linearized
from learnmech.theory.kernels import mlp_kernels
from learnmech.train.ensemble import train_ensemble

__all__ = ["WideNets", "WideNetsConfig"]


class WideNetsConfig(StudyConfig):
    widths: list[int] = Field(
        default_factory=lambda: [64, 128, 256, 512, 1024], description="hidden widths"
    )
    depth: int = Field(2, ge=1, le=8, description="hidden layers")
    activation: Literal["relu", "erf", "identity"] = "relu"
    w_std: float = Field(1.4, gt=0, le=10)
    b_std: float = Field(0.1, ge=0, le=10)
    dim: int = Field(6, ge=2, le=4096, description="input dimension")
    n_train: int = Field(32, ge=2, le=4096)
    n_test: int = Field(64, ge=2, le=4096)
    steps: int = Field(400, ge=1, le=1_000_000)
    lr_scale: float = Field(
        1.0, gt=0, lt=2, description="learning rate as a fraction of n/λ_max(Θ) (stable < 2)"
    )
    kernel_points: int = Field(16, ge=2, le=512, description="train points for empirical NTKs")
    kernel_seeds: int = Field(4, ge=1, le=4096, description="seeds whose empirical NTK is measured")
    data_seed: int = Field(0, ge=0)
    dtype: Literal["float32", "float64"] = "float32"
    tolerance_factor: float = Field(
        2.0, gt=0, description="tolerance = factor·√(depth/widest width), see WideNets.tolerance"
    )

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if len(v) < 2:
            raise ValueError("need at least two widths to fit a trend")
        if any(w < 1 for w in v):
            raise ValueError("widths must be positive integers")
        if len(set(v)) != len(v):
            raise ValueError("widths must be distinct")
        return sorted(v)


def _record_steps(steps: int, n: int = 30) -> list[int]:
    pts = np.unique(np.round(np.geomspace(1, steps, n)).astype(int))
    return [0, *pts.tolist()]


@functools.lru_cache(maxsize=8)
def _theory_cached(cfg_json: str) -> dict[str, Any]:
    cfg = WideNetsConfig.model_validate_json(cfg_json)
    task = sphere_regression(cfg.n_train, cfg.n_test, cfg.dim, seed=cfg.data_seed)
    x, xt = task.x_train.numpy(), task.x_test.numpy()
    kw = dict(depth=cfg.depth, activation=cfg.activation, w_std=cfg.w_std, b_std=cfg.b_std)
    k_tr = mlp_kernels(x, **kw)
    k_ts = mlp_kernels(xt, x, **kw)
    nngp_tt = np.array([mlp_kernels(xt[i : i + 1], **kw).nngp[0, 0] for i in range(len(xt))])
    lam_max = float(np.linalg.eigvalsh(k_tr.ntk)[-1])
    lr = cfg.lr_scale * cfg.n_train / lam_max  # mean loss: mode factor 1 − (lr/n)λ
    steps = _record_steps(cfg.steps)
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
    # Operator for the control variate: f_t(x*) − f₀(x*) = G_t (Y − f₀(X)).
    lam, v = np.linalg.eigh(k_tr.ntk)
    filt = linearized.mode_filters(lam, np.asarray(steps, float), lr / cfg.n_train, True)
    gain_op = np.einsum("mj,tj,ij->tmi", k_ts.ntk @ v, (1 - filt) / lam[None], v)
    # Train residual propagator: f_t(X) − Y = R_t (f₀(X) − Y), R_t = V diag(filt_t) Vᵀ.
    resid_op = np.einsum("ij,tj,kj->tik", v, filt, v)
    return {
        "task": task,
        "lr": lr,
        "steps": steps,
        "pred": pred,
        "gain_op": gain_op,
        "resid_op": resid_op,
        "k_train": k_tr.ntk,
        "lam": lam,
    }


def _theory(cfg: WideNetsConfig) -> dict[str, Any]:
    return _theory_cached(cfg.model_dump_json())


def _init_seed(seed: int, width: int) -> int:
    return (seed + 1) * 1_000_003 + width


class WideNets(Study):
    name = "wide-nets"
    title = "Wide networks train like their infinite-width linearization"
    summary = (
        "MLP ensembles vs analytic-NTK predictions of outputs, losses and kernels across widths"
    )
    pillar = "tractable limits"
    Config = WideNetsConfig
    sweep_fields = frozenset({"widths"})
    analysis_fields = frozenset({"tolerance_factor"})
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"widths": [64, 128, 256, 512, 1024], "seeds": 16, "steps": 400},
        "full": {
            "widths": [64, 128, 256, 512, 1024, 2048, 4096],
            "seeds": 32,
            "steps": 400,
            "kernel_seeds": 8,
        },
    }

    @staticmethod
    def tolerance(cfg: WideNetsConfig) -> float:
        """Relative tolerance at the widest width: c·√(L/w).

        The NTK of one finite network fluctuates around its limit with relative size
        O(√(L/w)) (Hanin & Nica 2019, "Finite depth and width corrections to the neural
        tangent kernel", Thm 1: Var/mean² ~ exp(5L/w) − 1 for ReLU); ensemble-mean
        quantities average the first-order fluctuation out, so they must lie within one
        network's kernel fluctuation, c·√(L/w) with c = ``tolerance_factor`` = 2 by default.
        """
        return cfg.tolerance_factor * math.sqrt(cfg.depth / max(cfg.widths))

    def grid(self, cfg: WideNetsConfig) -> list[dict[str, Any]]:
        return [{"width": w} for w in cfg.widths]

    # -- predict ------------------------------------------------------------------------
    def predict(self, cfg: WideNetsConfig) -> list[Curve]:
        th = _theory(cfg)
        pred = th["pred"]
        steps = np.asarray(th["steps"], dtype=float)
        curves = [
            Curve("train_loss", "step", steps, pred.expected_train_loss),
            Curve("test_loss", "step", steps, pred.expected_test_loss),
        ]
        angle = th["task"].test_angle.numpy()
        curves.append(Curve("test_output_mean", "angle", angle, pred.test[-1, :, 0]))
        curves.append(
            Curve("test_output_std", "angle", angle, np.sqrt(np.clip(pred.test_var[-1], 0, None)))
        )
        curves.append(Curve("test_target", "angle", angle, th["task"].y_test.numpy()[:, 0]))
        return curves

    # -- measure ------------------------------------------------------------------------
    def measure(
        self, cfg: WideNetsConfig, point: dict[str, Any], seeds: list[int], device: str
    ) -> dict[int, list[Curve]]:
        th = _theory(cfg)
        task = th["task"]
        width = int(point["width"])
        dtype = torch.float32 if cfg.dtype == "float32" else torch.float64
        dev = torch.device(device)
        x = task.x_train.to(dev, dtype)
        y = task.y_train.to(dev, dtype)
        xt = task.x_test.to(dev, dtype)

        def net(seed: int | None = None) -> MLP:
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
        k0 = {
            i: empirical_ntk(models[i], xk, mode="trace").double().cpu().numpy()
            for i in kernel_members
        }
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
            ]
            curves += [
                Curve("test_output", "step", steps, outs[:, j], series=f"{j}")
                for j in range(cfg.n_test)
            ]
            if i in kernel_members:
                final = net()
                final.load_state_dict({k: v[i] for k, v in res.params.items()})
                kt = empirical_ntk(final, xk, mode="trace").double().cpu().numpy()
                curves.append(
                    Curve(
                        "ntk_init_error",
                        "width",
                        [width],
                        [np.linalg.norm(k0[i] - k_an) / np.linalg.norm(k_an)],
                    )
                )
                curves.append(
                    Curve(
                        "kernel_change",
                        "width",
                        [width],
                        [np.linalg.norm(kt - k0[i]) / np.linalg.norm(k0[i])],
                    )
                )
            out[s] = curves
        return out

    # -- compare ------------------------------------------------------------------------
    def _per_width(
        self, cfg: WideNetsConfig, trials: list[TrialResult]
    ) -> dict[int, dict[str, Any]]:
        th = _theory(cfg)
        y = th["task"].y_train.numpy()[:, 0]
        gain = th["gain_op"]  # (T, m, n)
        mu = th["pred"].test[:, :, 0]  # (T, m)
        by_width: dict[int, dict[str, Any]] = {}
        for w in cfg.widths:
            ok = [t for t in trials if t.point.get("width") == w and t.status == "ok"]
            if not ok:
                continue
            outs = np.stack(
                [
                    np.stack([t.curve("test_output", f"{j}").values for j in range(cfg.n_test)], 1)
                    for t in ok
                ]
            )  # (S, T, m)
            f0 = np.stack([t.curve("init_train_output").values for t in ok])  # (S, n)
            f0_test = outs[:, 0, :]  # (S, m): outputs at step 0
            lin = f0_test[:, None, :] + np.einsum("tmi,si->stm", gain, y[None] - f0)
            dev = outs - lin  # (S, T, m): deviation from each net's own linearization
            S = dev.shape[0]
            scale = np.sqrt(np.mean(mu[-1] ** 2))

            def bias_rms(d: np.ndarray, scale: float = scale) -> float:
                # ‖mean_s d‖² over-estimates ‖E d‖² by tr Cov/S: subtract it (unbiased).
                m2 = np.mean(d.mean(0) ** 2)
                noise = np.mean(d.var(0, ddof=1)) / d.shape[0] if d.shape[0] > 1 else 0.0
                return float(np.sqrt(max(m2 - noise, 0.0)) / scale)

            mean_err, mean_err_se = jackknife(dev[:, -1, :], bias_rms)
            seed_err, seed_err_se = jackknife(
                dev[:, -1, :], lambda d, scale=scale: np.sqrt(np.mean(d**2)) / scale
            )
            # Loss curves with the same control variate: L_s − L_lin,s has the same mean
            # discrepancy as L_s − E[L] but without the seed-to-seed spread of f₀.
            yt = th["task"].y_test.numpy()[:, 0]
            tl = np.stack([t.curve("test_loss").values for t in ok])
            tl_lin = 0.5 * np.mean((lin - yt) ** 2, axis=2)
            trl = np.stack([t.curve("train_loss").values for t in ok])
            r_lin = np.einsum("tik,sk->sti", th["resid_op"], f0 - y[None])
            trl_lin = 0.5 * np.mean(r_lin**2, axis=2)
            pred = th["pred"]
            entry = {
                "n": S,
                "mean_err": mean_err,
                "mean_err_se": mean_err_se,
                "seed_err": seed_err,
                "seed_err_se": seed_err_se,
                "test_loss_raw": mean_se(tl),
                "train_loss_raw": mean_se(trl),
                "test_loss_cv": mean_se(tl - tl_lin),
                "train_loss_cv": mean_se(trl - trl_lin),
                "outputs_raw": mean_se(outs[:, -1, :]),
                "outputs_cv": mean_se(dev[:, -1, :]),
                "steps": ok[0].curve("train_loss").coords,
            }
            entry["test_loss"] = (
                pred.expected_test_loss + entry["test_loss_cv"][0],
                entry["test_loss_cv"][1],
            )
            entry["train_loss"] = (
                pred.expected_train_loss + entry["train_loss_cv"][0],
                entry["train_loss_cv"][1],
            )
            entry["outputs"] = (mu[-1] + entry["outputs_cv"][0], entry["outputs_cv"][1])
            for obs in ("ntk_init_error", "kernel_change"):
                vals = [t.curve(obs).values[0] for t in ok if t.curve(obs) is not None]
                if vals:
                    entry[obs] = mean_se(np.asarray(vals))
            by_width[w] = entry
        return by_width

    def compare(
        self, cfg: WideNetsConfig, theory: list[Curve], trials: list[TrialResult]
    ) -> list[Metric]:
        th = _theory(cfg)
        per = self._per_width(cfg, trials)
        if not per:
            return [Metric("trials_ok", 0, 1, ">=", description="no successful trial")]
        metrics: list[Metric] = []
        wmax = max(per)
        e = per[wmax]
        metrics.append(
            Metric(
                f"mean_output_rel_error@w{wmax}",
                e["mean_err"],
                self.tolerance(cfg),
                "<=",
                stderr=e["mean_err_se"],
                description="RMS of E[f_T] − μ_T over test points / RMS μ_T (control-variate "
                "estimate, seed noise subtracted)",
            )
        )
        pred_tl = th["pred"].expected_test_loss
        d_tl, se_tl = e["test_loss_cv"]
        rel = np.abs(d_tl) / pred_tl
        k = int(np.argmax(rel))
        metrics.append(
            Metric(
                f"test_loss_curve_max_rel_error@w{wmax}",
                float(rel[k]),
                self.tolerance(cfg),
                "<=",
                stderr=float(se_tl[k] / pred_tl[k]),
                description="max over steps of |E[measured] − predicted| / predicted test loss "
                "(control-variate estimate)",
            )
        )
        raw_m, raw_se = e["test_loss_raw"]
        z = np.abs(raw_m - pred_tl) / np.maximum(raw_se, 1e-300)
        metrics.append(
            Metric(
                f"test_loss_raw_max_z@w{wmax}",
                float(z.max()),
                None,
                description="max over steps of |plain seed mean − predicted| in standard errors "
                "(no control variate)",
            )
        )
        widths = np.array(sorted(per), dtype=float)
        if len(widths) >= 2:
            fit = fit_power_law(
                widths,
                [per[w]["seed_err"] for w in sorted(per)],
                [per[w]["seed_err_se"] for w in sorted(per)],
            )
            metrics.append(
                Metric(
                    "output_deviation_exponent",
                    fit.exponent,
                    None,
                    stderr=fit.exponent_se,
                    description="fitted slope of log RMS(f_T − f_lin,T) vs log width "
                    "(theory: −1/2)",
                )
            )
            metrics.append(
                Metric(
                    "output_deviation_exponent_upper_2se",
                    fit.exponent + 2 * fit.exponent_se,
                    0.0,
                    "<",
                    description="error decreases with width: slope + 2 SE < 0",
                )
            )
            for obs, label in (
                ("ntk_init_error", "NTK at init vs analytic"),
                ("kernel_change", "relative kernel change"),
            ):
                ws = [w for w in sorted(per) if obs in per[w]]
                if len(ws) >= 2:
                    f = fit_power_law(
                        np.array(ws, float),
                        [per[w][obs][0] for w in ws],
                        [per[w][obs][1] for w in ws],
                    )
                    metrics.append(
                        Metric(
                            f"{obs}_exponent",
                            f.exponent,
                            None,
                            stderr=f.exponent_se,
                            description=f"fitted slope of {label} vs width (theory: −1/2)",
                        )
                    )
                    metrics.append(
                        Metric(
                            f"{obs}@w{ws[-1]}",
                            float(per[ws[-1]][obs][0]),
                            None,
                            stderr=float(per[ws[-1]][obs][1]),
                            description=label,
                        )
                    )
        metrics.append(failures_metric(trials))
        return metrics

    # -- figures ------------------------------------------------------------------------
    def figures(
        self,
        cfg: WideNetsConfig,
        theory: list[Curve],
        trials: list[TrialResult],
        metrics: list[Metric],
        outdir: Path,
    ) -> list[Figure]:
        from learnmech.report import plots

        per = self._per_width(cfg, trials)
        if not per:
            return []
        th = _theory(cfg)
        return plots.wide_nets_figures(cfg, th, per, outdir)
