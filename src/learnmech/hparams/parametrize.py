"""Width and depth parameterizations (SP, NTK, μP, mean-field; depth-μP, CompleteP) for any
``nn.Module``.

Every scheme is written *relative to a base model*: the user builds the model as usual,
in standard parameterization (SP: weights with variance ∝ 1/fan_in, PyTorch's default), and
a base-width copy of the same architecture. Comparing parameter shapes tells each
parameter's role, and how much each of its dimensions grew (the width multipliers
``m_in = fan_in/base_fan_in``, ``m_out = fan_out/base_fan_out``):

=========  ============================================  ===================================
role       shape test (dims that differ from the base)  examples
=========  ============================================  ===================================
hidden     fan_in and fan_out                            hidden Linear, attention, MLP
input      fan_out only                                  first Linear, nn.Embedding
output     fan_in only                                   readout Linear (the "unembedding")
vector     the one dim of a 1-d tensor                   hidden biases, LayerNorm gains
fixed      none                                          readout bias, width-free parts
=========  ============================================  ===================================

The rules (Yang & Hu 2021, "Tensor Programs IV", Table 1; Yang et al. 2022, "Tensor
Programs V", Tables 3 and 8 — the form the ``mup`` package implements) as multipliers of the
base learning rate η, Adam's ε and the init standard deviation:

* ``sp`` — nothing changes.
* ``ntk`` — Jacot et al.'s parameterization (multiplier σ/√fan_in on N(0, 1) weights),
  written on the SP init: hidden and output learning rates ×1/m_in (SGD) or ×1/√m_in with
  ε ×√m_in (Adam, the exact image of the multiplier). A kernel limit for SGD; under Adam it
  is *not* width-stable, which a coord check shows.
* ``mup`` — μP in the ``mup`` package's form. Adam: hidden η/m_in; input, vectors, readout
  η; readout forward multiplier 1/m_in with its init variance ×m_in (width-free). SGD:
  input and vectors η·m, hidden η·m_out/m_in, readout η·m_in. Attention logits q·k/d_head
  instead of q·k/√d_head (as √d₀/d so the base is unchanged).
* ``mf`` — the same μP dynamics in the multiplier-free, mean-field form (Tensor Programs V
  Table 3; Bordelon & Pehlevan 2022 — μP is the deep generalization of mean field, Yang &
  Hu 2021 §5): readout init std ×1/√m_in and its learning rate η/m_in. Under Adam it traces
  exactly the trajectory of ``mup`` (tested), which makes it a useful check of any table.

ε (``scale_eps=True``): every group's ε is multiplied by the width scaling of its gradient
(×1/m under μP, where every backward signal is O(1/width)), so ε never dominates √v at
width — REFERENCES §4 ("Adam ε for hidden matrices scaled by 1/m"), extended to every group
whose gradient shrinks. Weight decay: each group keeps the per-step decay lr·wd of the base
(wd ×1/lr-multiplier), as the ``mup`` package does (Wang & Aitchison 2024 argue the same
timescale rule for AdamW).

Depth (``depth="depth-mup"`` or ``"completep"``), with r = L/L₀ the ratio of residual
blocks to the base's: each residual branch is multiplied by r^(−α) (α = 1/2, Yang et al.
2023 "Tensor Programs VI"; Bordelon et al. 2023; α = 1, Dey et al. 2025 "CompleteP"), and
the branch's parameters get learning rate ×r^(α−1) and ε ×r^(−α) under Adam, ×r^(2α−1) under
SGD (so that the L branches together move the residual stream by O(1) per step).

At the base width (and depth) every multiplier is 1: μP equals SP exactly.

Nothing is stored on tensors: the roles live in the returned :class:`Parametrization`,
learning rates, ε and weight decay in the optimizer's param groups (which
``optimizer.state_dict()`` keeps), and forward multipliers in plain float attributes of
modules (``ScaledLinear.w_mult``, ``attn_scale``, ``branch_mult``) or in picklable hook
objects, so ``torch.save``/``load``, ``deepcopy`` and ``torch.compile`` all keep them.
"""

from __future__ import annotations

import fnmatch
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from learnmech.errors import UserError

__all__ = [
    "DEPTH_SCHEMES",
    "OPTIMIZERS",
    "SCHEMES",
    "InputMultiplier",
    "OutputMultiplier",
    "ParamRule",
    "Parametrization",
    "parametrize",
]

SCHEMES = ("sp", "ntk", "mup", "mf")
_ALIASES = {"standard": "sp", "μp": "mup", "mean-field": "mf", "meanfield": "mf"}
DEPTH_SCHEMES = ("depth-mup", "completep")
_DEPTH_ALPHA = {"depth-mup": 0.5, "completep": 1.0}
OPTIMIZERS = ("sgd", "adam", "adamw")
ROLES = ("input", "hidden", "output", "vector", "fixed")
_MARK = "_learnmech_parametrization"
_INDEX = re.compile(r"\.\d+(?=\.|$)")


class InputMultiplier:
    """Forward pre-hook that multiplies a module's first input by ``mult`` (picklable)."""

    def __init__(self, mult: float) -> None:
        self.mult = float(mult)

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0] * self.mult, *args[1:])

    def __repr__(self) -> str:
        return f"InputMultiplier({self.mult:.6g})"


class OutputMultiplier:
    """Forward hook that multiplies a module's output by ``mult`` (picklable)."""

    def __init__(self, mult: float) -> None:
        self.mult = float(mult)

    def __call__(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> Any:
        return out * self.mult

    def __repr__(self) -> str:
        return f"OutputMultiplier({self.mult:.6g})"


@dataclass(frozen=True)
class ParamRule:
    """How one parameter is treated: its role, width multipliers and scalings."""

    name: str
    role: str
    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    m_in: float
    m_out: float
    init_mult: float
    lr_mult: float
    eps_mult: float
    wd_mult: float
    depth_ratio: float | None = None  # L/L₀ for parameters inside a residual branch

    def as_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "shape": "×".join(map(str, self.shape)) or "()",
            "base_shape": "×".join(map(str, self.base_shape)) or "()",
            "m_in": self.m_in,
            "m_out": self.m_out,
            "init_mult": self.init_mult,
            "lr_mult": self.lr_mult,
            "eps_mult": self.eps_mult,
            "wd_mult": self.wd_mult,
            "depth_ratio": self.depth_ratio,
        }


@dataclass
class Parametrization:
    """The outcome of :func:`parametrize`: per-parameter rules and forward multipliers.

    ``param_groups()`` and ``optimizer()`` build the optimizer; ``table()`` lists the
    rules as tidy rows; ``multipliers`` lists the forward multipliers that were set.
    """

    scheme: str
    optimizer_name: str
    lr: float
    weight_decay: float
    eps: float
    betas: tuple[float, float]
    momentum: float
    depth: str | None
    rules: list[ParamRule]
    multipliers: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    def rule(self, name: str) -> ParamRule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"no parameter named {name!r}")

    def param_groups(self, model: nn.Module | None = None) -> list[dict[str, Any]]:
        """Optimizer param groups, one per distinct (lr, ε, weight decay) setting.

        Pass ``model`` to build the groups for another instance with the same parameter
        names (a deepcopy, a reloaded checkpoint). Each group also carries ``lm_role`` and
        ``lm_lr_mult`` for inspection; torch optimizers keep extra keys in their state dict.
        """
        model = model if model is not None else self.model
        if model is None:
            raise ValueError("param_groups needs the model (this Parametrization has none)")
        params = dict(model.named_parameters())
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in self.rules:
            if r.name not in params:
                raise ValueError(f"model has no parameter {r.name!r}; is it the same model?")
            p = params[r.name]
            if not p.requires_grad:
                continue
            key = (r.role, r.lr_mult, r.eps_mult, r.wd_mult)
            g = groups.get(key)
            if g is None:
                g = {
                    "params": [],
                    "lr": self.lr * r.lr_mult,
                    "weight_decay": self.weight_decay * r.wd_mult,
                    "lm_role": r.role,
                    "lm_lr_mult": r.lr_mult,
                }
                if self.optimizer_name in ("adam", "adamw"):
                    g["eps"] = self.eps * r.eps_mult
                groups[key] = g
            g["params"].append(p)
        return list(groups.values())

    def optimizer(self, model: nn.Module | None = None, **kwargs: Any) -> torch.optim.Optimizer:
        """The torch optimizer (SGD, Adam or AdamW) over :meth:`param_groups`."""
        groups = self.param_groups(model)
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, **kwargs)
        cls = torch.optim.Adam if self.optimizer_name == "adam" else torch.optim.AdamW
        return cls(groups, lr=self.lr, betas=self.betas, eps=self.eps, **kwargs)

    def table(self) -> list[dict[str, Any]]:
        return [r.as_row() for r in self.rules]

    def roles(self) -> dict[str, str]:
        return {r.name: r.role for r in self.rules}

    def __str__(self) -> str:
        head = f"{self.scheme} / {self.optimizer_name}, lr {self.lr:g}" + (
            f", depth {self.depth}" if self.depth else ""
        )
        lines = [head]
        for r in self.rules:
            lines.append(
                f"  {r.name:<40} {r.role:<7} m_in {r.m_in:<6.3g} m_out {r.m_out:<6.3g} "
                f"init ×{r.init_mult:<8.4g} lr ×{r.lr_mult:<8.4g} eps ×{r.eps_mult:.4g}"
            )
        for m in self.multipliers:
            lines.append(f"  {m['module']:<40} {m['kind']} = {m['value']:.6g}")
        return "\n".join(lines)


def _shapes(obj: nn.Module | Mapping[str, Sequence[int]], what: str) -> dict[str, tuple[int, ...]]:
    if isinstance(obj, nn.Module):
        return {n: tuple(p.shape) for n, p in obj.named_parameters()}
    if isinstance(obj, Mapping):
        return {str(n): tuple(int(d) for d in s) for n, s in obj.items()}
    raise TypeError(
        f"{what} must be an nn.Module of the same architecture (e.g. built on the meta "
        f"device) or a mapping of parameter names to shapes, got {type(obj).__name__}"
    )


def _owners(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    out: dict[str, tuple[str, nn.Module]] = {}
    for mname, mod in model.named_modules():
        for pname, _ in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            out.setdefault(full, (mname, mod))
    return out


def _transposed(owner: nn.Module) -> bool:
    """Weights stored (in, out): nn.Embedding (vocab, dim) and HuggingFace's ``Conv1D``
    (GPT-2's projections, weight (in_features, out_features))."""
    return isinstance(owner, nn.Embedding) or type(owner).__name__ == "Conv1D"


def _forced_multipliers(
    role: str, shape: tuple[int, ...], base: tuple[int, ...], owner: nn.Module, name: str
) -> tuple[float, float]:
    """(m_in, m_out) of a parameter whose role the user gave: the width growth of the
    dims that role reads (a forced role skips shape inference, so it also works for the
    3-d ``cls_token`` or position table of a ViT)."""
    if len(shape) != len(base):
        raise UserError(f"parameter {name}: shape {shape} and base shape {base} differ in rank")
    ratio = [s / b for s, b in zip(shape, base, strict=True)]
    if not ratio:
        return 1.0, 1.0
    if role == "hidden" and len(shape) < 2:
        raise UserError(f"parameter {name}: a hidden weight needs two dims, got {shape}")
    if len(shape) == 2 or role == "hidden":
        o, i = (1, 0) if _transposed(owner) else (0, 1)
        return ratio[i], ratio[o]
    grow = max(ratio)  # the one dim that grows (1-d gains, 3-d tokens and tables)
    return grow, grow


def _infer_role(
    shape: tuple[int, ...], base: tuple[int, ...], ref: tuple[int, ...], owner: nn.Module, name: str
) -> tuple[str, float, float]:
    """Role and (m_in, m_out) from a parameter's shape and its base shape; the dims that
    differ between ``base`` and ``ref`` (the model's or a delta model's shape) are the
    infinite ones."""
    if len(shape) != len(base):
        raise UserError(f"parameter {name}: shape {shape} and base shape {base} differ in rank")
    if len(shape) == 0:
        return "fixed", 1.0, 1.0
    ratio = [s / b for s, b in zip(shape, base, strict=True)]
    inf = [b != r for b, r in zip(base, ref, strict=True)]
    if len(shape) == 1:
        return ("vector" if inf[0] else "fixed"), 1.0, ratio[0]
    if any(inf[2:]):
        raise UserError(
            f"parameter {name}: dimensions past the first two change with width ({shape} vs "
            f"{base}); give its role with roles={{{name!r}: ...}}"
        )
    out_i, in_i = (1, 0) if _transposed(owner) else (0, 1)
    m_out, m_in = ratio[out_i], ratio[in_i]
    if inf[out_i] and inf[in_i]:
        return "hidden", m_in, m_out
    if inf[out_i]:
        return "input", 1.0, m_out
    if inf[in_i]:
        return "output", m_in, 1.0
    return "fixed", 1.0, 1.0


def _width_rule(
    scheme: str, role: str, opt: str, m_in: float, m_out: float, scale_eps: bool
) -> tuple[float, float, float]:
    """(init_mult, lr_mult, eps_mult) for the width scheme; see the module docstring."""
    sgd = opt == "sgd"
    if scheme == "sp" or role == "fixed":
        return 1.0, 1.0, 1.0
    if scheme == "ntk":
        if role in ("hidden", "output"):
            if sgd:
                return 1.0, 1.0 / m_in, 1.0
            return 1.0, 1.0 / math.sqrt(m_in), math.sqrt(m_in) if scale_eps else 1.0
        return 1.0, 1.0, 1.0
    # μP (both forms)
    if role in ("input", "vector"):
        return 1.0, (m_out if sgd else 1.0), (1.0 / m_out if scale_eps else 1.0)
    if role == "hidden":
        return 1.0, (m_out / m_in if sgd else 1.0 / m_in), (1.0 / m_in if scale_eps else 1.0)
    # output
    if scheme == "mup":  # forward multiplier 1/m_in, width-free init variance
        return math.sqrt(m_in), (m_in if sgd else 1.0), (1.0 / m_in if scale_eps else 1.0)
    return 1.0 / math.sqrt(m_in), 1.0 / m_in, 1.0  # mf: the multiplier folded in


def _match(name: str, patterns: Mapping[str, Any]) -> Any:
    for pat, val in patterns.items():
        if fnmatch.fnmatchcase(name, pat):
            return val
    return None


def _check_number(
    name: str, value: Any, *, positive: bool = True, allow_zero: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise UserError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _branch_modules(
    model: nn.Module, branches: Iterable[str] | None
) -> list[tuple[str, nn.Module, bool]]:
    """(name, module, has_attribute) for each residual branch."""
    mods = dict(model.named_modules())
    if branches is not None:
        out = []
        for pat in branches:
            hit = [(n, m) for n, m in mods.items() if n and fnmatch.fnmatchcase(n, pat)]
            if not hit:
                raise UserError(f"branches: no module of the model matches {pat!r}")
            out.extend((n, m, hasattr(m, "branch_mult")) for n, m in hit)
        return out
    return [(n, m, True) for n, m in mods.items() if hasattr(m, "branch_mult")]


def parametrize(
    model: nn.Module,
    scheme: str = "mup",
    *,
    base: nn.Module | Mapping[str, Sequence[int]],
    delta: nn.Module | Mapping[str, Sequence[int]] | None = None,
    optimizer: Literal["sgd", "adam", "adamw"] = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    betas: tuple[float, float] = (0.9, 0.999),
    momentum: float = 0.0,
    depth: str | None = None,
    branches: Iterable[str] | None = None,
    roles: Mapping[str, str] | None = None,
    readout_zero_init: bool = False,
    scale_eps: bool = True,
    rescale_init: bool = True,
    no_decay: Iterable[str] = (),
    init: Literal["sp", "fixed"] = "sp",
) -> Parametrization:
    """Apply a width (and optionally depth) parameterization to ``model`` in place.

    Arguments:
        model: any ``nn.Module`` initialised in standard parameterization.
        scheme: ``"sp"``, ``"ntk"``, ``"mup"`` or ``"mf"`` (mean-field form of μP).
        base: the same architecture at the base width (and depth): a module — build it on
            ``torch.device("meta")`` to skip allocating — or ``{name: shape}``.
        delta: optional third width, to tell which dimensions are infinite when ``model``
            is itself at the base width (as ``mup.set_base_shapes`` does); by default the
            dims that differ between ``model`` and ``base`` are the infinite ones.
        optimizer, lr, weight_decay, eps, betas, momentum: the base optimizer settings, as
            tuned at the base width.
        depth: ``None``, ``"depth-mup"`` (branch ×1/√r) or ``"completep"`` (×1/r).
        branches: glob patterns naming the residual-branch modules whose output is added to
            the residual stream (default: modules with a ``branch_mult`` attribute, as in
            :class:`~learnmech.nets.ResMLP` and :class:`~learnmech.nets.GPT`).
        roles: ``{glob: role}`` overrides for what shape inference cannot see.
        readout_zero_init: zero the readout weights (and bias), a common μP choice.
        scale_eps: scale Adam's ε per group with the gradient's width scaling.
        rescale_init: rescale the initial weights (turn off before loading a checkpoint).
        init: how ``model`` was initialised: ``"sp"`` (variance ∝ 1/fan_in, PyTorch's
            default) or ``"fixed"`` (one std at every width, as HuggingFace's
            ``initializer_range`` and timm's ``trunc_normal_(std=.02)`` do). With
            ``"fixed"`` every weight whose fan-in grows is first brought to SP (×1/√m_in,
            as ``mup``'s init helpers do for such models); the scheme's rules then apply.
            With ``"sp"`` and a base module holding real weights, a weight whose std did
            not shrink with its fan-in raises a ``UserWarning`` that names this option.
        no_decay: parameters without weight decay: glob patterns of names (a tied
            tensor's every name counts) or ``"role:<role>"``, e.g. ``["*bias",
            "role:vector", "*wte*"]`` for the usual "no decay on biases, norms and
            embeddings".

    Returns:
        :class:`Parametrization` — build the optimizer with ``.optimizer()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(scheme, str):
        raise UserError(f"scheme must be a string, one of {', '.join(SCHEMES)}; got {scheme!r}")
    scheme_key = _ALIASES.get(scheme.lower(), scheme.lower())
    if scheme_key not in SCHEMES:
        raise UserError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    if depth is not None and depth not in DEPTH_SCHEMES:
        raise UserError(f"unknown depth scheme {depth!r}; expected None or one of {DEPTH_SCHEMES}")
    lr = _check_number("lr", lr)
    weight_decay = _check_number("weight_decay", weight_decay, allow_zero=True)
    eps = _check_number("eps", eps, allow_zero=True)
    momentum = _check_number("momentum", momentum, allow_zero=True)
    for r in (roles or {}).values():
        if r not in ROLES:
            raise UserError(f"unknown role {r!r} in roles; expected one of {', '.join(ROLES)}")
    if init not in ("sp", "fixed"):
        raise UserError(f"init must be 'sp' or 'fixed', got {init!r}")
    if isinstance(no_decay, str):
        no_decay = [no_decay]
    no_decay = list(no_decay)
    for pat in no_decay:
        if pat.startswith("role:") and pat[5:] not in ROLES:
            raise UserError(f"no_decay: unknown role in {pat!r}; roles are {', '.join(ROLES)}")

    shapes = _shapes(model, "model")
    base_shapes = _shapes(base, "base")
    aliases = _tied(model)
    known = set(shapes) | {a for names in aliases.values() for a in names}
    for pat in roles or {}:
        if not any(fnmatch.fnmatchcase(n, pat) for n in known):
            raise UserError(
                f"roles: {pat!r} matches no parameter of the model (e.g. "
                f"{', '.join(sorted(known)[:3])}, …)"
            )
    for pat in no_decay:
        if not pat.startswith("role:") and not any(fnmatch.fnmatchcase(n, pat) for n in known):
            raise UserError(f"no_decay: {pat!r} matches no parameter of the model")
    # the infinite dims are those that differ between base and delta (default: the model)
    ref_shapes = _shapes(delta, "delta") if delta is not None else dict(shapes)
    owners = _owners(model)
    already = getattr(model, _MARK, None)

    # depth: which parameters sit in residual branches, and r = L / L₀
    branch_list = _branch_modules(model, branches) if depth is not None else []
    in_branch: dict[str, str] = {}
    depth_ratio = None
    if depth is not None:
        if not branch_list:
            raise UserError(
                "depth scaling needs residual branches: the model has no module with a "
                "branch_mult attribute; name them with branches=[...]"
            )
        if isinstance(base, nn.Module):
            base_count = len(_branch_modules(base, branches))
        else:
            raise UserError("depth scaling needs base to be a module (to count its branches)")
        if base_count == 0:
            raise UserError("depth scaling: the base model has no residual branches")
        depth_ratio = len(branch_list) / base_count
        for bname, bmod, _ in branch_list:
            for pname, _ in bmod.named_parameters():
                in_branch[f"{bname}.{pname}"] = bname

    # a deeper (or shallower) model has blocks the base lacks: match them by pattern,
    # with every index in the name free (blocks.7.fc.weight ~ blocks.0.fc.weight)
    for table in (base_shapes, ref_shapes):
        by_pattern: dict[str, tuple[int, ...]] = {}
        for n, sh in table.items():
            by_pattern.setdefault(_INDEX.sub(".#", n), sh)
        for name in shapes:
            if name not in table and _INDEX.sub(".#", name) in by_pattern:
                table[name] = by_pattern[_INDEX.sub(".#", name)]

    rules: list[ParamRule] = []
    for name, shape in shapes.items():
        if name not in base_shapes:
            raise UserError(
                f"parameter {name} is not in the base model; base must be the same "
                f"architecture at another width (its parameters: {len(base_shapes)})"
            )
        _mname, owner = owners[name]
        # roles first: what the user names is never inferred (nor refused) from shapes
        forced = next(
            (r for n in [name, *aliases.get(name, [])] if (r := _match(n, roles or {}))), None
        )
        if forced is not None:
            role = forced
            m_in, m_out = _forced_multipliers(role, shape, base_shapes[name], owner, name)
        else:
            role, m_in, m_out = _infer_role(
                shape, base_shapes[name], ref_shapes.get(name, base_shapes[name]), owner, name
            )
        if role in ("input", "vector"):
            m_in = 1.0
        if role == "output":
            m_out = 1.0
        init_mult, lr_mult, eps_mult = _width_rule(
            scheme_key, role, optimizer, m_in, m_out, scale_eps
        )
        dr = None
        if depth is not None and name in in_branch:
            dr = float(depth_ratio)  # type: ignore[arg-type]
            alpha = _DEPTH_ALPHA[depth]
            if optimizer == "sgd":
                lr_mult *= dr ** (2 * alpha - 1)
            else:
                lr_mult *= dr ** (alpha - 1)
                if scale_eps:
                    eps_mult *= dr ** (-alpha)
        if init == "fixed" and role in ("hidden", "output") and m_in != 1.0:
            init_mult /= math.sqrt(m_in)  # to SP first: std ∝ 1/√fan_in
        if readout_zero_init and role == "output":
            init_mult = 0.0
        rules.append(
            ParamRule(
                name=name,
                role=role,
                shape=shape,
                base_shape=base_shapes[name],
                m_in=float(m_in),
                m_out=float(m_out),
                init_mult=float(init_mult),
                lr_mult=float(lr_mult),
                eps_mult=float(eps_mult),
                wd_mult=0.0
                if _no_decay(name, aliases.get(name, []), role, no_decay)
                else 1.0 / float(lr_mult),
                depth_ratio=dr,
            )
        )

    if init == "sp" and rescale_init and already is None:
        _warn_fixed_init(model, base, rules)
    multipliers = _plan_multipliers(
        model, base, scheme_key, rules, owners, depth, branch_list, depth_ratio
    )
    multipliers += _tied_readouts(model, scheme_key, rules, aliases)

    if already is None:
        mu = scheme_key in ("mup", "mf")
        _apply(model, rules, multipliers, owners, rescale_init, readout_zero_init, mu)
        setattr(model, _MARK, f"{scheme_key}/{optimizer}" + (f"/{depth}" if depth else ""))
    elif rescale_init:
        raise UserError(
            f"model is already parametrized ({already}); to rebuild only the optimizer groups "
            "(e.g. after loading a checkpoint) pass rescale_init=False"
        )

    return Parametrization(
        scheme=scheme_key,
        optimizer_name=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        eps=eps,
        betas=(float(betas[0]), float(betas[1])),
        momentum=momentum,
        depth=depth,
        rules=rules,
        multipliers=multipliers,
        model=model,
    )


def _warn_fixed_init(
    model: nn.Module, base: nn.Module | Mapping[str, Sequence[int]], rules: list[ParamRule]
) -> None:
    """Warn when weights look initialised with one std at every width (std ratio to the
    base near 1 rather than SP's 1/√m_in): the rules assume SP and would leave them too
    large by √m_in."""
    if not isinstance(base, nn.Module):
        return
    ours, theirs = dict(model.named_parameters()), dict(base.named_parameters())
    odd = []
    for r in rules:
        if r.role not in ("hidden", "output") or r.m_in < 2 or r.name not in theirs:
            continue
        a, b = ours[r.name].detach(), theirs[r.name].detach()
        if a.is_meta or b.is_meta or a.numel() < 64 or b.numel() < 64:
            continue
        sa, sb = float(a.double().std()), float(b.double().std())
        if sa > 0 and sb > 0:
            ratio, sp = sa / sb, 1 / math.sqrt(r.m_in)
            if abs(math.log(ratio)) < abs(math.log(ratio / sp)):  # nearer 1 than 1/√m_in
                odd.append(f"{r.name} (std ×{ratio:.2f} for fan-in ×{r.m_in:g})")
    if odd:
        warnings.warn(
            f"{len(odd)} weight(s) look initialised with one std at every width, not SP's "
            f"1/√fan_in, e.g. {odd[0]}; parametrize assumes SP — pass init='fixed' (as for "
            "HuggingFace and timm models)",
            UserWarning,
            stacklevel=3,
        )


def _no_decay(name: str, others: list[str], role: str, patterns: list[str]) -> bool:
    for pat in patterns:
        if pat.startswith("role:"):
            if pat[5:] == role:
                return True
        elif any(fnmatch.fnmatchcase(n, pat) for n in [name, *others]):
            return True
    return False


def _tied(model: nn.Module) -> dict[str, list[str]]:
    """Parameters shared by several modules (tied embeddings): canonical name → the other
    names (``named_parameters`` lists a shared tensor once, under its first name)."""
    seen: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        seen.setdefault(id(p), []).append(n)
    return {names[0]: names[1:] for names in seen.values() if len(names) > 1}


def _tied_readouts(
    model: nn.Module, scheme: str, rules: list[ParamRule], aliases: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """A readout tied to the input embedding (GPT-2's ``lm_head.weight`` is
    ``transformer.wte.weight``): one tensor in two roles. Under μP with the ``mup`` form
    this is ``mup``'s ``MuSharedReadout``: the tensor keeps the input embedding's rules
    (width-free init; Adam η, SGD η·m) and the readout gets the forward multiplier 1/m on
    its input (m = the embedding width's growth), so the logits stay O(1). The forms that
    would need two different learning rates or inits for the one tensor are refused."""
    out: list[dict[str, Any]] = []
    mods = dict(model.named_modules())
    by_name = {r.name: r for r in rules}
    for name, others in aliases.items():
        r = by_name.get(name)
        if r is None or r.role != "input":
            continue
        for other in others:
            mname = other.rpartition(".")[0]
            mod = mods.get(mname)
            if not isinstance(mod, nn.Linear) or r.m_out == 1.0:
                continue
            if scheme in ("ntk", "mf"):
                raise UserError(
                    f"{other} is tied to the input embedding {name}; the {scheme!r} form "
                    "needs a different learning rate or init for the readout than for the "
                    "embedding, which one shared tensor cannot have: untie them "
                    "(e.g. tie_word_embeddings=False) or use scheme='mup'"
                )
            if scheme == "mup":
                out.append(
                    {"module": mname, "kind": "input_hook", "value": 1.0 / r.m_out, "tied": name}
                )
    return out


def _plan_multipliers(
    model: nn.Module,
    base: nn.Module | Mapping[str, Sequence[int]],
    scheme: str,
    rules: list[ParamRule],
    owners: dict[str, tuple[str, nn.Module]],
    depth: str | None,
    branch_list: list[tuple[str, nn.Module, bool]],
    depth_ratio: float | None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    mu = scheme in ("mup", "mf")
    if scheme == "mup":
        seen: set[str] = set()
        for r in rules:
            if r.role != "output" or r.m_in == 1.0:
                continue
            mname, mod = owners[r.name]
            if mname in seen:
                continue
            seen.add(mname)
            kind = "w_mult" if hasattr(mod, "w_mult") else "input_hook"
            if kind == "input_hook" and not (
                isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"
            ):
                raise UserError(
                    f"readout {r.name} is owned by a {type(mod).__name__}, where a 1/width "
                    "multiplier cannot be placed; use scheme='mf' (the same μP dynamics with "
                    "the multiplier folded into init and learning rate)"
                )
            out.append({"module": mname, "kind": kind, "value": 1.0 / r.m_in})
    base_mods = dict(base.named_modules()) if isinstance(base, nn.Module) else {}
    for mname, mod in model.named_modules():
        if isinstance(mod, nn.MultiheadAttention) and mu:
            raise UserError(
                f"{mname or 'model'} is an nn.MultiheadAttention, whose 1/√d logit scale "
                "cannot be changed; μP needs 1/d — use a module with `attn_scale` and "
                "`head_dim` attributes (learnmech.nets.GPT's attention has them)"
            )
        scale_attr = next((a for a in ("scaling", "scale") if _is_float(mod, a)), None)
        if mu and scale_attr and hasattr(mod, "head_dim") and not hasattr(mod, "attn_scale"):
            # HuggingFace (``scaling``) and timm (``scale``) attention: logits are
            # q·k·scale with scale = 1/√d (times any layer factor); μP's √d₀/d is that
            # times √(d₀/d)
            if mname not in base_mods:
                raise UserError(f"attention {mname!r} has no counterpart in the base module")
            d, d0 = int(mod.head_dim), int(base_mods[mname].head_dim)
            if d != d0:
                out.append({"module": mname, "kind": scale_attr, "value": math.sqrt(d0 / d)})
        if mu and hasattr(mod, "attn_scale") and hasattr(mod, "head_dim"):
            if mname not in base_mods:
                raise UserError(f"attention {mname!r} has no counterpart in the base module")
            d, d0 = int(mod.head_dim), int(base_mods[mname].head_dim)
            if d != d0:
                # μP: q·k/d, written as √d₀/d so the base keeps 1/√d₀ (Yang et al. 2022 §J)
                out.append({"module": mname, "kind": "attn_scale", "value": math.sqrt(d0) / d})
    if depth is not None and depth_ratio is not None and depth_ratio != 1.0:
        m = depth_ratio ** (-_DEPTH_ALPHA[depth])
        for bname, _, has_attr in branch_list:
            kind = "branch_mult" if has_attr else "output_hook"
            out.append({"module": bname, "kind": kind, "value": m})
    return out


def _is_float(mod: nn.Module, attr: str) -> bool:
    v = getattr(mod, attr, None)
    return isinstance(v, float) and not isinstance(v, bool)


@torch.no_grad()
def _apply(
    model: nn.Module,
    rules: list[ParamRule],
    multipliers: list[dict[str, Any]],
    owners: dict[str, tuple[str, nn.Module]],
    rescale_init: bool,
    readout_zero_init: bool,
    mu: bool,
) -> None:
    params = dict(model.named_parameters())
    mods = dict(model.named_modules())
    if rescale_init:
        for r in rules:
            if r.init_mult != 1.0:
                params[r.name].mul_(r.init_mult)
        by_name = {r.name: r for r in rules}
        for mname, mod in mods.items():
            bias = getattr(mod, "bias", None)
            weight = getattr(mod, "weight", None)
            if not isinstance(bias, torch.Tensor) or not isinstance(weight, torch.Tensor):
                continue
            wr = by_name.get(f"{mname}.weight" if mname else "weight")
            if wr is None:
                continue
            if readout_zero_init and wr.role == "output":
                bias.zero_()
            elif mu and isinstance(mod, nn.Linear | nn.modules.conv._ConvNd) and wr.m_in != 1.0:
                # PyTorch draws these biases with scale 1/√fan_in; μP wants width-free
                # vectors, so undo the fan-in growth (as mup.set_base_shapes does)
                bias.mul_(math.sqrt(wr.m_in))
    for m in multipliers:
        mod = mods[m["module"]]
        kind, value = m["kind"], m["value"]
        if kind == "w_mult":
            mod.w_mult = float(mod.w_mult) * value
        elif kind == "input_hook":
            mod.register_forward_pre_hook(InputMultiplier(value))
        elif kind == "attn_scale":
            mod.attn_scale = value
        elif kind in ("scaling", "scale"):
            setattr(mod, kind, float(getattr(mod, kind)) * value)
        elif kind == "branch_mult":
            mod.branch_mult = float(mod.branch_mult) * value
        elif kind == "output_hook":
            mod.register_forward_hook(OutputMultiplier(value))
