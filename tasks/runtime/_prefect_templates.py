"""A shortcut through Prefect's templating pass over prefect.yaml, and why.

* :func:`fill_env_templates`: Prefect's templating pass over prefect.yaml, as ``prefect
  deploy`` does it.

Each shortcut here names the versions it was checked against (``CHECKED_AGAINST``);
``tests/unit/test_library_internals.py`` holds its upgrade test, which fails loudly when the
library stops doing what it relies on. After a dependency upgrade: run those tests,
re-measure if one fails, and update ``CHECKED_AGAINST``.
"""

from __future__ import annotations

CHECKED_AGAINST = {"prefect": "3.9"}


# -- Prefect: prefect.yaml's environment templates --------------------------------------------
def fill_env_templates(specs, env: dict):
    """``{{ $NAME }}`` values in deployment specs filled from ``env``, as ``prefect deploy`` does.

    Why: ``deployments/serve.py`` must read prefect.yaml exactly as ``prefect deploy`` does,
    and Prefect has no public function for that pass. Event templates (``{{ event.… }}``)
    are left as they are, for the trigger to fill.

    Relies on: ``prefect.utilities.templating.apply_values(template, values,
    remove_notset=False)`` (Prefect 3.9).
    """
    from prefect.utilities.templating import apply_values

    return apply_values(specs, dict(env), remove_notset=False)
