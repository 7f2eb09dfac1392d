"""Size of the study files (issue #14: "at least 30% shorter in total, median ≤ 250").

    python benchmarks/study_size.py [FILE ...]

Counts source lines that hold code: lines with a token other than a comment, leaving out
docstrings (module, class and function; found with ``ast``) and comments and blank lines
(``tokenize``). Default files: the 14 studies that existed when issue #14 was filed, whose
total was 4,774 then; prints each file, the total, the median, and the total against
4,774.
"""

from __future__ import annotations

import ast
import io
import statistics
import sys
import tokenize
from pathlib import Path

STUDIES = Path(__file__).resolve().parents[1] / "src" / "learnmech" / "studies"
ORIGINAL = (
    "conservation critical_batch_size data_spectra deep_linear edge_of_stability "
    "feature_ansatz lazy_rich learning_curves linear_scaling_rule lr_transfer "
    "neural_collapse scaling_laws universality wide_nets"
).split()
START = 4774  # the 14 studies' total when the issue was filed
SKIP = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def code_lines(path: Path) -> int:
    """Lines holding a code token, docstrings and comments left out."""
    src = path.read_text()
    doc: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            first = node.body[0]
            doc.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in SKIP:
            continue
        lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in doc)
    return len(lines)


def main() -> None:
    files = [Path(f) for f in sys.argv[1:]] or [STUDIES / f"{n}.py" for n in ORIGINAL]
    sizes = {f.name: code_lines(f) for f in files}
    for name, n in sizes.items():
        print(f"{n:6d}  {name}")
    total = sum(sizes.values())
    print(f"total {total}, median {statistics.median(sizes.values()):g}")
    if not sys.argv[1:]:
        print(f"against the {START} at the start: {total / START:.1%} (goal ≤ 70%)")


if __name__ == "__main__":
    main()
