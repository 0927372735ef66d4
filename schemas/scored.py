"""The scored-batch contract: every input row, in order, with `score` and `decision` appended.

``score`` is the probability of the positive class (in [0, 1]); ``decision`` is 1 (flag) when
``score >= threshold`` of the version that scored it, else 0.
"""

SCORE = "score"
DECISION = "decision"
