"""The serving stage: scoring rows with a registered version.

Batch scoring (``batch_scoring``): every input row, in order, with its score and decision;
a registered version's classifier from Python (``registered_model``: ``load_model``).
"""
