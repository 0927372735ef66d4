"""What runs rareflow's steps: Prefect, files on disk, and the run's outcome.

Durable file writes (``durable_files``), Prefect events and artifact keys (``events``), the
temporary API server (``_temporary_server``), the user's folders (``user_dirs``), generated
deployments (``deployments``) and the outcome a run ends in (``run_outcome``).
``_prefect_templates``, ``_prefect_console`` and ``_heap`` are shortcuts through library
internals, each with its upgrade test.
"""
