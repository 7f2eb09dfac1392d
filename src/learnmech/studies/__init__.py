"""The study catalog. Each study lives in its own module and is imported on demand."""

from __future__ import annotations

import importlib

from learnmech.errors import UserError
from learnmech.studies.base import Figure, Study, StudyConfig

__all__ = ["Figure", "Study", "StudyConfig", "get_study", "list_studies", "STUDIES"]

# name -> "module:Class"; order is the catalog order.
STUDIES: dict[str, str] = {
    "wide-nets": "learnmech.studies.wide_nets:WideNets",
}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    module, cls = STUDIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def list_studies() -> list[Study]:
    return [get_study(n) for n in STUDIES]
