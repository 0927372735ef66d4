"""The scored contract: the column names of a scored batch and of a scored source, and the
state file that remembers what a scored source holds. The one source of these names.

A scored *batch* (``rareflow score --data FILE --out FILE``): every input row, in order, with
``score`` and ``decision`` appended.

A scored *source* (``rareflow score --data SOURCE --out SCORED``): one Parquet partition per
input partition, at the input's relative path with the suffix ``.parquet``. Each row, in
input order, holds:

- the row key, always the first column: the source's ``id_column`` (its own name and type),
  or, without one, ``row_key``: the first 16 bytes of the sha256 of the row's input values,
  as 32 hex characters (:func:`tasks.data.row_keys.row_keys`);
- the time column, when the scoring config names one (its own name and type);
- ``score`` (float64, probability of the positive class), ``decision`` (int8: 1 when
  ``score >= threshold``), ``model_version`` (``v0003``), ``threshold`` (float64),
  ``model_signature`` (the sha256 of the version's ``signature.json``: it covers the manifest
  of every file of the version, the model's name and version id and the registry's identity;
  null for an unsigned version), ``scored_at`` (timestamp, UTC; one per partition run);
- reserved for a shadow challenger: ``challenger_score``, ``challenger_decision``,
  ``challenger_version`` (absent when there is none).

``SCORED/_rareflow_scored.json`` (written atomically after each partition):
``{"model": name, "partitions": {input relpath: {"sha256", "version", "rows", "scored_at"}}}``
where ``sha256`` is the input file's, so a rerun scores only new or changed partitions.
Hidden entries (names starting with '.', which readers and pyarrow's dataset discovery skip):
the run lock, a cache of the input files' digests, and ``.rareflow_keys/`` (per partition, the
sorted 64-bit hashes of its row keys, to refuse a key that repeats across partitions).
"""

SCORE = "score"
DECISION = "decision"
POPULATION_WEIGHT = "population_weight"  # a version's reference rows from a negative sample

ROW_KEY = "row_key"
ROW_KEY_BYTES = 16  # of the sha256 digest: 32 hex characters
MODEL_VERSION = "model_version"
THRESHOLD = "threshold"
MODEL_SIGNATURE = "model_signature"
SCORED_AT = "scored_at"
SERVED_COLUMNS = (SCORE, DECISION, MODEL_VERSION, THRESHOLD, MODEL_SIGNATURE, SCORED_AT)

CHALLENGER_SCORE = "challenger_score"
CHALLENGER_DECISION = "challenger_decision"
CHALLENGER_VERSION = "challenger_version"
CHALLENGER_COLUMNS = (CHALLENGER_SCORE, CHALLENGER_DECISION, CHALLENGER_VERSION)

STATE_FILE = "_rareflow_scored.json"
STATE_MODEL = "model"
STATE_PARTITIONS = "partitions"
# how the rows are keyed: {KEY_ID_COLUMN: ..., KEY_TIME_COLUMN: ...} (the time column is part
# of a content fingerprint, `row_key`); written by rareflow since 2026-12-05, absent before
STATE_KEY = "key"
KEY_ID_COLUMN, KEY_TIME_COLUMN = "id_column", "time_column"  # named as the scoring options
PARTITION_FIELDS = ("sha256", "version", "rows", "scored_at")
SCORED_SUFFIX = ".parquet"
SCORED_DEFAULT_SUFFIX = "-scored"  # default output of a source: `<source>-scored` beside it
SCORED_COLUMNS = (*SERVED_COLUMNS, *CHALLENGER_COLUMNS)  # what a scored row adds to its key
