"""The statuses a run reports (its summary's ``status``): one source for each name.

Training ends ``passed`` (promoted), ``rejected``, ``refused`` (could not be judged fairly),
``stale`` (the champion moved while it ran) or ``pending`` (awaiting a manual approval);
monitoring ends ``no-drift``, ``drift`` or ``cannot-judge``.
"""

PASSED = "passed"
REJECTED = "rejected"
REFUSED = "refused"
STALE = "stale"
PENDING = "pending"  # a candidate that passed every gate and awaits a manual approval

NO_DRIFT = "no-drift"
DRIFT = "drift"
CANNOT_JUDGE = "cannot-judge"

# gate names read outside the gates (tasks/judge/gates.py writes them)
FAIR_ROWS_GATE = "champion_fair_rows"  # too few test rows neither model trained on
CHAMPION_COST_GATE = "champion_cost"  # the paired cost comparison with the champion
CHAMPION_RECALL_GATE = "champion_recall"  # the paired recall comparison with the champion
SHADOW_FIRST_GATE = "shadow_first"  # gates.shadow_first: live matured rows decide, not test rows
