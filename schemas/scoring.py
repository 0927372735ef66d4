"""The scoring flow's parameters: a batch or a data source, where the scored rows go, the
version, and the source's row key and time column (``rareflow score``, the score deployment)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.config import check_name
from schemas.executor import Executor, check_dask_address, dask_address_field, dask_workers_field
from schemas.scored import ROW_KEY, SCORED_DEFAULT_SUFFIX
from schemas.storage import StorageOptions, storage_options_field


class ScoringConfig(BaseModel):
    """Score a batch, or the partitions of a data source not yet scored, with a version."""

    # hide_input_in_errors: a rejected value (storage_options) is never echoed by pydantic
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

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
    dask_address: str | None = dask_address_field()
    dask_workers: int = dask_workers_field()
    storage_options: StorageOptions = storage_options_field()

    @model_validator(mode="after")
    def _address_needs_dask(self):
        check_dask_address(self.dask_address, self.executor)
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value)
