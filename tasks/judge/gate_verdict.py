"""The gate verdict as types: one :class:`GateResult` per gate, the :class:`Verdict` over them.

These cross the flow → CLI boundary and are written into a version's ``metadata.json`` as
the dict :meth:`Verdict.as_dict` gives (the format older and newer rareflow read);
:meth:`Verdict.from_dict` reads a stored one back, including those recorded before gates
had a point estimate beside the judged bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

PASSED, REJECTED, REFUSED = "passed", "rejected", "refused"


@dataclass(frozen=True)
class GateResult:
    """One gate: whether it passed, the judged value (a bound, or the point estimate), the
    point estimate, the limit and a sentence saying what was judged."""

    gate: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str
    point: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "passed", bool(self.passed))
        if self.point is None:
            object.__setattr__(self, "point", self.value)

    def as_dict(self) -> dict:
        return {"gate": self.gate, "passed": self.passed, "value": self.value,
                "point": self.point, "limit": self.limit, "detail": self.detail}

    @classmethod
    def from_dict(cls, row: dict) -> GateResult:
        """A stored gate row (without ``point`` when recorded before bounds were judged)."""
        return cls(row["gate"], row["passed"], row.get("value"), row.get("limit"),
                   row.get("detail", ""), point=row.get("point"))


@dataclass(frozen=True)
class Verdict:
    """What the gates decided: ``passed``, ``rejected``, ``refused`` (too few fair test
    positives to judge) or, with manual approval, ``pending``."""

    status: str
    gates: list[GateResult] = field(default_factory=list)
    comparison: dict | None = None
    bounds: dict | None = None
    approval: dict | None = None

    @property
    def failed(self) -> list[str]:
        return [g.gate for g in self.gates if not g.passed]

    def with_status(self, status: str, **approval) -> Verdict:
        return replace(self, status=status, approval=approval or self.approval)

    def as_dict(self) -> dict:
        """The JSON form stored in metadata.json (unchanged since rareflow 0.4)."""
        out = {"status": self.status, "gates": [g.as_dict() for g in self.gates],
               "comparison": self.comparison, "bounds": self.bounds}
        if self.approval is not None:
            out["approval"] = self.approval
        return out

    @classmethod
    def from_dict(cls, verdict: dict) -> Verdict:
        return cls(verdict.get("status", "?"),
                   [GateResult.from_dict(g) for g in verdict.get("gates", [])],
                   verdict.get("comparison"), verdict.get("bounds"), verdict.get("approval"))


def verdict_table(verdict: Verdict) -> pd.DataFrame:
    """The gate rows as text: gate, passed, point estimate, judged value (bound), limit."""
    table = pd.DataFrame([g.as_dict() for g in verdict.gates],
                         columns=["gate", "passed", "value", "point", "limit", "detail"])
    table = table[["gate", "passed", "point", "value", "limit", "detail"]].rename(
        columns={"value": "judged"})
    for column in ("point", "judged", "limit"):
        table[column] = table[column].map(lambda v: "" if v is None else f"{v:.4g}")
    table.insert(0, "result", table["passed"].map({True: "✅ pass", False: "❌ FAIL"}))
    return table
