"""The decision stage: what a miss and a false alarm cost, and where the model decides.

The cost-based threshold chosen on out-of-fold scores (``threshold``), score calibration
(``calibration``), the review team's alert capacity (``capacity``) and the served classifier
that decides at the threshold (``served_classifier``).
"""
