"""What happened to the candidates of one request, and the error when none answered."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from mesh.contract.errors import MeshError, Overloaded, UpstreamUnavailable
from mesh.router.catalog import Candidate


@dataclass
class Attempts:
    """Failures per candidate, in the order they were tried."""

    made: int = 0
    failures: dict[Candidate, str] = field(default_factory=dict)
    codes: list[grpc.StatusCode] = field(default_factory=list)
    retry_after_s: float = 0.0

    def fail(self, cand: Candidate, why: str, code: grpc.StatusCode | None = None) -> None:
        self.failures[cand] = why
        if code is not None:
            self.codes.append(code)

    def exhausted(self, candidates: int) -> MeshError:
        """Every candidate failed before committing: overloaded if all said so, else down."""
        summary = "; ".join(f"{c.node_id}: {why}" for c, why in self.failures.items())[:512]
        metadata = {"attempts": str(self.made), "failures": summary}
        if self.codes and all(c == grpc.StatusCode.RESOURCE_EXHAUSTED for c in self.codes):
            return Overloaded(
                f"all {candidates} candidate node(s) are at capacity",
                metadata=metadata,
                retry_after_s=self.retry_after_s or 1.0,
            )
        return UpstreamUnavailable(f"all {candidates} candidate node(s) failed", metadata=metadata)
