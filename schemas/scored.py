"""The scored-batch contract: every input row, in order, with `score` and `decision` appended.

``score`` is the probability of the positive class (in [0, 1]); ``decision`` is 1 (flag) when
``score >= threshold`` of the version that scored it, else 0.

A scored source (``rareflow score --data SOURCE --out SCORED``) holds, for each input
partition, a Parquet file mirroring its relative path; each row carries its row key (the
configured ``id_column``, else ``row_key``: a sha256-based content fingerprint), ``score``,
``decision``, ``model_version``, ``threshold``, ``model_signature``, ``scored_at`` (UTC), the
time column if configured and, with a shadow challenger, ``challenger_score``,
``challenger_decision`` and ``challenger_version`` (never served: ``decision`` is the
champion's). ``SCORED/_rareflow_scored.json`` names the model and the partitions scored.
"""

SCORE = "score"
DECISION = "decision"
ROW_KEY = "row_key"
MODEL_VERSION = "model_version"
THRESHOLD = "threshold"
MODEL_SIGNATURE = "model_signature"
SCORED_AT = "scored_at"
CHALLENGER_SCORE = "challenger_score"
CHALLENGER_DECISION = "challenger_decision"
CHALLENGER_VERSION = "challenger_version"
SCORED_STATE_FILE = "_rareflow_scored.json"

CHALLENGER_COLUMNS = (CHALLENGER_SCORE, CHALLENGER_DECISION, CHALLENGER_VERSION)
SCORED_COLUMNS = (SCORE, DECISION, MODEL_VERSION, THRESHOLD, MODEL_SIGNATURE, SCORED_AT,
                  *CHALLENGER_COLUMNS)  # every column a scored row adds besides its key
