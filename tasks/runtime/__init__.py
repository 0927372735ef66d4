"""What runs rareflow's steps: Prefect, files on disk, and the run's outcome.

Durable file writes (``durable_files``), Prefect events (``events``), the temporary API server
(``_temporary_server``), the user's folders (``user_dirs``), generated deployments
(``deployments``), preflight checks (``preflight``) and the outcome a run ends in
(``run_outcome``). ``_prefect_templates`` and ``_prefect_console`` are shortcuts through
Prefect's internals, each with its upgrade test.
"""
