"""The search stage: which strategy a table gets, fitted on training rows only.

Candidates (``candidates``) and their hyper-parameters (``hyperparams``), the model pipeline
(``pipeline``) with its estimators (``estimators``) and resamplers (``samplers``),
cross-validation (``cross_validation``), the search's work plan (``work_plan``), selection
(``selection``), the evidence a candidate is judged on (``evidence``: its held-out test part,
or nested CV on small data), scale-out on Dask (``dask_fits``), progress (``progress``) and the
final fit (``final_fit``). Private modules (``_fast_hgb``, ``_fold_memory``) hold measured
shortcuts through library internals, each with its upgrade test.
"""
