"""The monitoring stage: is the served model still good on matured labels?

The verdict of a monitoring run (``verdict``), the minority-recall drop test
(``recall_drop``), the label-free estimate (``label_free_estimate``), evidently reports
(``reports``, read through ``_evidently_snapshot``), their links and server
(``report_links``, ``reports_server``). What monitoring has checked is a sealed registry record
(:mod:`tasks.registry.monitor_state`).
"""
