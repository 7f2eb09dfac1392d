"""Provenance recorded with every run: versions, git sha, device, host, times."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["default_device", "git_sha", "provenance", "resolve_device"]


def git_sha(path: str | Path | None = None) -> str | None:
    """The commit of the git checkout containing ``path`` (default: cwd), or None."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=str(path) if path else None,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=str(path) if path else None,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return sha + ("-dirty" if dirty.stdout.strip() else "")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """The device a run asked for, checked: ``cpu``, ``cuda`` or ``cuda:N`` that exists
    here (default: CUDA when available). Raises :class:`UserError` otherwise."""
    import torch

    from learnmech.errors import UserError

    if device is None:
        return default_device()
    if not isinstance(device, str) or not (
        device == "cpu" or device == "cuda" or device.startswith("cuda:")
    ):
        raise UserError(f"device must be cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {device}: CUDA is not available on this machine")
        idx = device.partition(":")[2]
        if idx and (not idx.isdigit() or int(idx) >= torch.cuda.device_count()):
            raise UserError(
                f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def provenance() -> dict[str, Any]:
    import duckdb
    import numpy
    import torch

    import learnmech

    device = default_device()
    info: dict[str, Any] = {
        "learnmech": learnmech.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "duckdb": duckdb.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": platform.node(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "git_sha": git_sha(Path(learnmech.__file__).parent) or git_sha(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
