"""rareflow's steps: plain functions, with thin Prefect task wrappers.

Prefect attaches its handlers to the plain loggers named in PREFECT_LOGGING_EXTRA_LOGGERS
(``tasks``, ``flows``, ``schemas``) but not its level, so their INFO records (rows loaded,
candidates scored, the choice, the promotion) would stop at the root logger's WARNING. Every
flow imports this package (a worker loads a flow file by path, without its package), so our
own loggers are set to INFO here, unless already set.
"""

import logging

for _name in ("tasks", "flows", "schemas"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.INFO)
