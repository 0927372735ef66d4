"""The registry: signed, versioned models and which one serves.

The store (``store``) of immutable versions (``versions``), signing (``signing``,
``signed_records``, ``sign_existing``), the champion pointer and history (``champion``), the
served classifier (``served``), what a training run records (``training_record``), the model
card (``model_card``), versions side by side (``compare``) and the class paths of older
releases' pickles (``class_paths``). ``_tree_bytes`` makes a model's bytes reproducible.
"""
