"""The serving stage: scoring rows with a registered version.

Batch scoring (``batch_scoring``): every input row, in order, with its score and decision.
A source scored incrementally (``scored_source``), a partition at a time by record batches
(``partition_scoring``), into the scored contract of ``schemas/scored.py``; auditing a scored
row's decision (``audit``); the short way in from Python (``registered_model``).
"""
