"""The decision stage: what a miss and a false alarm cost, and where the model decides.

The one cost concept (``costs``), the cost-based threshold chosen on out-of-fold scores
(``threshold``), score calibration (``calibration``) and the review team's alert capacity
(``capacity``).
"""
