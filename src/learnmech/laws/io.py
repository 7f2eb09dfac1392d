"""Reading scaling-law data from CSV files, with clear errors for bad files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from learnmech.errors import UserError
from learnmech.laws.families import Law

__all__ = ["ALIASES", "read_scaling_csv"]

#: column names tried, in order, when a column option is not given
ALIASES: dict[str, tuple[str, ...]] = {
    "N": ("N", "params", "parameters", "n_params", "Model Size", "model_size"),
    "D": ("D", "tokens", "n_tokens", "data", "Tokens"),
    "C": ("C", "compute", "flops", "FLOPs", "Training FLOP", "training_flop"),
    "x": ("x", "N", "D", "C", "size", "steps"),
    "loss": ("loss", "Loss", "L", "test_loss", "val_loss"),
}


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a CSV file")
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first name
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file (cannot decode as UTF-8)") from None
    except csv.Error as err:
        raise UserError(f"{path}: malformed CSV ({err})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise UserError(f"{path}: line {i} has {len(r)} fields, the header has {len(header)}")
    return header, body


def _column(path: Path, header: list[str], body: list[list[str]], name: str) -> np.ndarray:
    j = header.index(name)
    out = np.empty(len(body))
    for i, r in enumerate(body):
        cell = r[j].strip()
        try:
            if not cell.isascii():  # float() takes "１２" (fullwidth digits): a typo, not data
                raise ValueError(cell)
            v = float(cell)
        except ValueError:
            raise UserError(
                f"{path}: column {name!r}, line {i + 2}: {cell!r} is not a number"
            ) from None
        if not math.isfinite(v):
            raise UserError(f"{path}: column {name!r}, line {i + 2}: {cell!r} is not finite")
        if v <= 0:
            raise UserError(f"{path}: column {name!r}, line {i + 2}: {v:g} is not positive")
        out[i] = v
    return out


def _pick(header: list[str], key: str, given: str | None, path: Path, required: bool) -> str | None:
    if given is not None:
        if given not in header:
            raise UserError(f"{path}: no column {given!r}; columns are {', '.join(header)}")
        return given
    for cand in ALIASES[key]:
        if cand in header:
            return cand
    if required:
        raise UserError(
            f"{path}: cannot find the {key} column (tried {', '.join(ALIASES[key])}); "
            f"name it with --{key.lower()}-col. Columns are {', '.join(header)}"
        )
    return None


def read_scaling_csv(
    path: str | Path,
    law: Law,
    *,
    columns: dict[str, str | None] | None = None,
    drop_highest: int = 0,
) -> dict[str, np.ndarray]:
    """Inputs and loss for ``law`` from a CSV file.

    Chinchilla/Kaplan laws need N and D; when D is absent but a compute column C is present,
    D = C/(6N) (Kaplan et al. 2020's C ≈ 6ND). ``drop_highest`` removes that many rows with
    the highest loss (the Chinchilla re-analysis drops 5). ``columns["groups"]`` names a
    column of labels (e.g. run ids) returned as strings under ``_groups``. Returns arrays
    by input name plus ``loss`` and the column names used under ``_columns``.
    """
    p = Path(path)
    header, body = _read(p)
    if not body:
        raise UserError(f"{p}: no data rows")
    cols = dict(columns or {})
    used: dict[str, str] = {}
    out: dict[str, np.ndarray] = {}
    loss_col = _pick(header, "loss", cols.get("loss"), p, True)
    assert loss_col is not None
    out["loss"] = _column(p, header, body, loss_col)
    used["loss"] = loss_col
    if law.inputs == ("N", "D"):
        n_col = _pick(header, "N", cols.get("N"), p, True)
        assert n_col is not None
        out["N"] = _column(p, header, body, n_col)
        used["N"] = n_col
        d_col = _pick(header, "D", cols.get("D"), p, False)
        if d_col is not None:
            out["D"] = _column(p, header, body, d_col)
            used["D"] = d_col
        else:
            c_col = _pick(header, "C", cols.get("C"), p, False)
            if c_col is None:
                raise UserError(
                    f"{p}: needs a tokens column D or a compute column C (D = C/(6N)); "
                    f"columns are {', '.join(header)}"
                )
            out["D"] = _column(p, header, body, c_col) / (6 * out["N"])
            used["C"] = c_col
    else:
        x_col = _pick(header, "x", cols.get("x"), p, True)
        assert x_col is not None
        out["x"] = _column(p, header, body, x_col)
        used["x"] = x_col
    if cols.get("groups"):
        name = cols["groups"]
        if name not in header:
            raise UserError(f"{p}: no column {name!r}; columns are {', '.join(header)}")
        j = header.index(name)
        labels = [r[j].strip() for r in body]
        if not all(labels):
            line = labels.index("") + 2
            raise UserError(f"{p}: column {name!r}, line {line}: an empty group label")
        out["_groups"] = np.array(labels)
        used["groups"] = name
    if drop_highest:
        if drop_highest < 0 or drop_highest >= len(body):
            raise UserError(f"drop-highest must be between 0 and {len(body) - 1}")
        keep = np.sort(np.argsort(out["loss"], kind="stable")[: len(body) - drop_highest])
        out = {k: v[keep] for k, v in out.items()}
    out["_columns"] = used  # type: ignore[assignment]
    return out
