"""The judging stage: the evidence a candidate is judged on, its metrics and gates.

The held-out evidence (``evidence``), imbalance-aware metrics (``metrics``), the metric gates
and the champion comparison (``gates``; the verdict as types in ``gate_verdict``), manual
approval (``approval``) and the plots a person reads (``plots``).
"""
