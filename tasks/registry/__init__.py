"""The registry: signed, versioned models and which one serves.

The store (``store``) of immutable versions (``versions``: their files, signature and
unpickling), signing (``signing``, ``signed_records``, ``sign_existing``), the champion pointer
and history (``champion``), the shadow challenger (``challenger``), the champion's scores of a
candidate's test rows (``champion_scores``), manual approval (``approval``), checks before a
training run (``preflight``), what monitoring has checked (``monitor_state``), what a training
run records (``training_record``), the model card (``model_card``), versions side by side
(``compare``) and the class paths of older releases' pickles (``class_paths``).
``_tree_bytes`` makes a model's bytes reproducible.
"""
