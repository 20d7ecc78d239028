"""The fixed train / held-out split of the labelled development files (../shared/eval/guards).

Every row lands in one split by a hash of its `id`, the same on every machine and every run,
whatever the file's order or the other rows in it. Trainers (guards/train_*.py) read only
`train` rows and tune their thresholds on them; every figure the project reports (README,
`mesh guard-eval --split heldout`, the e2e test) is computed on `heldout` rows only, which no
model or threshold has ever seen. A row without an id falls in `train`: it cannot be tracked,
so it is never reported as unseen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal

Split = Literal["train", "heldout"]
SPLITS: tuple[str, ...] = ("all", "train", "heldout")
# Half the rows are held out: the smallest category (14 system-prompt extraction attacks) still
# keeps a handful of unseen rows to report on.
HELD_OUT_PERCENT = 50
_SALT = b"inference-mesh/dev-split/v1:"


def split_of(row_id: str) -> Split:
    """`heldout` for about HELD_OUT_PERCENT % of ids, fixed by sha256 of the id."""
    digest = hashlib.sha256(_SALT + row_id.encode("utf-8")).digest()
    return "heldout" if int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_PERCENT else "train"


def rows_in(rows: Iterable[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """The rows of `split` ("all", "train" or "heldout")."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    if split == "all":
        return list(rows)
    return [r for r in rows if row_split(r) == split]


def row_split(row: dict[str, Any]) -> Split:
    row_id = row.get("id")
    return split_of(str(row_id)) if row_id else "train"
