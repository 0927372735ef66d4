"""The judging stage: how a candidate's decisions are measured and gated.

Imbalance-aware metrics (``metrics``: recall, PR AUC, expected cost, never plain accuracy),
the metric gates and the paired champion comparison (``gates``; the verdict as types in
``gate_verdict``), and the plots a person reads (``plots``). The evidence a candidate is judged
on is found by the search (:mod:`tasks.search.evidence`); approval is a registry record
(:mod:`tasks.registry.approval`).
"""
