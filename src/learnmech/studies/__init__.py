"""The study catalog. Each study lives in its own module and is imported on demand."""

from __future__ import annotations

import importlib
import os

from learnmech.errors import UserError
from learnmech.studies.base import Figure, Study, StudyConfig

__all__ = ["STUDIES", "Figure", "Study", "StudyConfig", "get_study", "list_studies"]

# name -> "module:Class"; order is the catalog order.
STUDIES: dict[str, str] = {
    "wide-nets": "learnmech.studies.wide_nets:WideNets",
    "learning-curves": "learnmech.studies.learning_curves:LearningCurves",
    "deep-linear": "learnmech.studies.deep_linear:DeepLinearStudy",
    "conservation": "learnmech.studies.conservation:Conservation",
    "lazy-rich": "learnmech.studies.lazy_rich:LazyRich",
    "scaling-laws": "learnmech.studies.scaling_laws:ScalingLaws",
    "edge-of-stability": "learnmech.studies.edge_of_stability:EdgeOfStability",
    "critical-batch-size": "learnmech.studies.critical_batch_size:CriticalBatchSize",
    "linear-scaling-rule": "learnmech.studies.linear_scaling_rule:LinearScalingRule",
    "lr-transfer": "learnmech.studies.lr_transfer:LRTransfer",
    "universality": "learnmech.studies.universality:Universality",
    "neural-collapse": "learnmech.studies.neural_collapse:NeuralCollapse",
    "feature-ansatz": "learnmech.studies.feature_ansatz:FeatureAnsatz",
    "data-spectra": "learnmech.studies.data_spectra:DataSpectra",
    "proxy-plan": "learnmech.studies.proxy_plan:ProxyPlan",
    "quanta": "learnmech.studies.quanta:Quanta",
    "mean-field": "learnmech.studies.mean_field:MeanField",
    "saddle-to-saddle": "learnmech.studies.saddle_to_saddle:SaddleToSaddle",
    "grokking": "learnmech.studies.grokking:Grokking",
    "fourier-order": "learnmech.studies.fourier_order:FourierOrder",
    "catapult": "learnmech.studies.catapult:Catapult",
}


# run by workflows through the lab's runner, not listed in the catalog
HIDDEN: dict[str, str] = {"plan": "learnmech.plan.study:PlanStudy"}


def _registry() -> dict[str, str]:
    """Built-in studies, then plugins: the ``learnmech.studies`` entry-point group and
    ``LEARNMECH_STUDIES="name=module:Class,..."`` (handy for a project's own studies)."""
    reg = dict(STUDIES)
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="learnmech.studies"):
            reg.setdefault(ep.name, ep.value)
    except Exception:  # a broken plugin must not break the catalog
        pass
    for item in os.environ.get("LEARNMECH_STUDIES", "").split(","):
        if "=" in item:
            name, target = item.split("=", 1)
            reg[name.strip()] = target.strip()
    return reg


def get_study(name: str) -> Study:
    reg = _registry() | HIDDEN
    if name not in reg:
        raise UserError(f"unknown study {name!r}; known studies: {', '.join(reg)}")
    module, _, cls = reg[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except (ImportError, AttributeError) as err:
        raise UserError(f"cannot load study {name!r} from {reg[name]!r}: {err}") from None


def list_studies() -> list[Study]:
    return [get_study(n) for n in _registry()]
