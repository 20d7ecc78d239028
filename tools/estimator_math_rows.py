"""Generate school-maths rows with DeepMind's `mathematics_dataset` (PyPI 1.0.1, Apache-2.0).

Easy questions with maths notation ("Solve 126*r = 110*r + 80 for r.", "Which is smaller: -60 or
-58?") are a small model's work, however mathematical they look; the `_composed` modules chain
several such steps and are medium. Generated at the package's easiest entropy level with a fixed
seed, so the rows are the same on every run.

    pip install --target /tmp/mds --no-deps mathematics-dataset==1.0.1 absl-py
    PYTHONPATH=/tmp/mds python tools/estimator_math_rows.py --out /tmp/math_rows.jsonl

The 2019 package imports `base_solution_linear` from where sympy kept it then; the shim below
points the old name at its current home (the function is unchanged).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sys
from pathlib import Path
from types import FrameType

PER_MODULE = 24
# Modules left out: probability questions read as puzzles to people; measurement conversions
# need facts a small model may lack (both neither clearly small nor medium).
SKIP_PREFIXES = ("probability__", "measurement__conversion")


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Timeout


def _load() -> dict[str, object]:
    import sympy.solvers.diophantine  # noqa: F401 - the package whose attribute is shimmed
    from sympy.solvers.diophantine.diophantine import base_solution_linear

    sys.modules["sympy.solvers.diophantine"].base_solution_linear = base_solution_linear  # type: ignore[attr-defined]
    from absl import flags
    from mathematics_dataset import generate
    from mathematics_dataset.modules import modules

    flags.FLAGS(["estimator_math_rows"])
    return generate._filter_and_flatten(modules.train(generate._make_entropy_fn(0, 3)))  # type: ignore[no-any-return]


def rows(seed: int = 0) -> list[dict[str, str]]:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    signal.signal(signal.SIGALRM, _alarm)
    out = []
    for name, fn in sorted(_load().items()):
        if name.startswith(SKIP_PREFIXES):
            continue
        composed = name.endswith("_composed")
        for _ in range(PER_MODULE):
            try:
                signal.alarm(3)  # a few generators loop for long on unlucky draws
                problem = fn()  # type: ignore[operator]
            except Exception:  # modules broken by today's sympy/numpy: skip the module
                break
            finally:
                signal.alarm(0)
            text = str(problem.question)
            out.append(
                {
                    "text": text,
                    "tier": "medium" if composed else "small",
                    "kind": "school_maths_" + ("multi_step" if composed else "one_step"),
                    "source": f"mathematics_dataset:{name}",
                    "group": hashlib.sha256(text.encode()).hexdigest()[:16],
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    generated = rows()
    with args.out.open("w", encoding="utf-8") as fh:
        for row in generated:
            fh.write(json.dumps(row) + "\n")
    print(f"{len(generated)} rows -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
