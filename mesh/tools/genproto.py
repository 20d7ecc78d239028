"""Generate mesh/v1 Python code from protos/ with grpcio-tools (`make proto`).

The test suite runs the same generation into a temporary folder and compares, so committed
generated code can never drift from the contract.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "mesh" / "v1").glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Write the generated modules under out_root/mesh/v1 and return their paths."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    out_root.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = out_root / "mesh" / "v1"
    return sorted(p for p in generated.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "mesh" / "v1"), help="target package dir")
    ns = parser.parse_args(argv)
    target = Path(ns.out)
    # protoc writes <out_root>/mesh/v1/...; generate into the repo root's parent layout.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            (target / path.name).write_bytes(path.read_bytes())
            print(f"wrote {target / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
