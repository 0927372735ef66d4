"""The scored-batch contract: every input row, in order, with `score` and `decision` appended."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

SCORE = "score"
DECISION = "decision"


class ScoredColumns(pa.DataFrameModel):
    """Columns rareflow appends to a batch it scores."""

    score: Series[float] = pa.Field(ge=0, le=1, description="Probability of the positive class.")
    decision: Series[int] = pa.Field(isin=[0, 1], description="1 = flag (score >= threshold).")

    class Config:
        strict = False
