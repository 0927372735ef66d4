"""The data stage: tables and sources, what a run reads, lands and checks.

Reading and writing tables (``tables``), a source's files and schema (``source_files``), one
pass over them (``scan``), the window a run uses as of a time (``window``), labels and their
maturity (``labels``), how current a source is (``freshness``), landing a batch (``ingest``),
what an arrival trains on (``arrivals``), validation (``validation``, ``value_checks``), the
stratified split (``split``), a source's row keys (``row_keys``) and the demo's generated
tables (``demo_tables``).
"""
