"""Two router replicas starting at once on one model cache (a shared volume): one converts and
distils the static table, the other waits on the lock and reads it; nothing half-written is
left, and the table is the same, bit for bit, as the one built alone (distillation is
deterministic, so replicas built apart route alike)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mesh.embeddings.minilm_assets import CACHE_ENV
from mesh.embeddings.static_table import TABLE_FILE, static_table

REPLICA = """
from mesh.embeddings.static_table import static_table
from mesh.embeddings.static import StaticEmbedder
folder = static_table(show_progress=False)
StaticEmbedder(folder).embed(["a replica warms up"])
print(folder)
"""


def test_two_replicas_distil_once_into_a_shared_cache(tmp_path: Path) -> None:
    env = {**os.environ, CACHE_ENV: str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    folders = {Path(out.strip()) for out, _ in outs}
    assert len(folders) == 1
    (folder,) = folders
    assert folder.parent.parent == tmp_path and (folder / ".mesh-complete").exists()
    assert not list(tmp_path.rglob("*.partial"))
    shared = np.load(folder / TABLE_FILE)
    alone = np.load(static_table(show_progress=False) / TABLE_FILE)  # the suite's own cache
    assert np.array_equal(shared, alone)
