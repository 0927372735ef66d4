"""The scoring flow's parameters: a batch or a data source, where the scored rows go, the
version, and the source's row key and time column (``rareflow score``, the score deployment)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.config import DASK_WORKERS, Executor, check_name
from schemas.scored import ROW_KEY, SCORED_DEFAULT_SUFFIX


class ScoringConfig(BaseModel):
    """Score a batch, or the partitions of a data source not yet scored, with a version."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(..., description="The batch to score (a CSV or Parquet file), or a data "
                      "source: a folder of partitions or a glob.")
    out: str | None = Field(None, description="Where scored rows go: a file for a batch "
                            "(required); for a source, a folder mirroring its partitions "
                            f"(default: `<source>{SCORED_DEFAULT_SUFFIX}` beside it).")
    registry: str = Field("registry", description="Folder of the model registry.")
    name: str = Field("model", description="Model name in the registry.")
    version: str = Field("champion", description="`champion`, `latest` or a version id.")
    id_column: str | None = Field(None, description="Column of a source holding each row's "
                                  "unique key, carried into every scored row (default: "
                                  f"`{ROW_KEY}`, a fingerprint of the row's input values).")
    time_column: str | None = Field(None, description="Column of a source with each row's "
                                    "event time, carried into every scored row.")

    executor: Executor = Field("local", description="Where a source's partitions are "
                               "scored: `local` (this process, one after another) or `dask` "
                               "(one Prefect task per partition on a Dask cluster; each worker "
                               "reads its partition and verifies the model itself).")
    dask_address: str | None = Field(None, description="Scheduler address of an existing "
                                     "Dask cluster, e.g. tcp://10.0.0.5:8786 (executor "
                                     "`dask`); default: a local cluster started for the run.")
    dask_workers: int = Field(DASK_WORKERS, ge=1, le=256, description="Worker processes of "
                              "the local Dask cluster (1 thread each).")

    @model_validator(mode="after")
    def _address_needs_dask(self):
        if self.dask_address and self.executor != "dask":
            raise ValueError("dask_address is set but executor is "
                             f"{self.executor!r}: set executor to 'dask' to use the cluster")
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value)
