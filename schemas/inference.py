"""The input schema a model is trained on: inferred from data or taken from a DataFrameModel.

An :class:`InputSchema` is plain data (pydantic), frozen into every registered version and
enforced on every batch the version scores or monitors. Column lists for preprocessing come
from here, never from strings repeated elsewhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import keyword
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel

from schemas.errors import ConfigError

MAX_STORED_CATEGORIES = 1000


def rebuild_model(cls: type[BaseModel], data: dict) -> BaseModel:
    """Unpickle a model from its ``model_dump()`` (see :class:`_StablePickle`)."""
    return cls.model_validate(data)


class _StablePickle(BaseModel):
    """Pickle as the class and its ``model_dump()``, so equal models pickle to equal bytes.

    pydantic's own pickling includes the set of fields given, whose order follows the
    string hash and so changes between processes (PYTHONHASHSEED): model.joblib would differ
    from run to run for the same data, configuration and seed. A plain dict of the fields
    has one order. (Models pickled by rareflow 0.1 are rebuilt on load by
    ``tasks.search.final_fit.ThresholdedModel``.)
    """

    def __reduce__(self):
        return rebuild_model, (type(self), self.model_dump())


class FeatureSpec(_StablePickle):
    """One input column."""

    name: str
    kind: Literal["numeric", "categorical"]
    dtype: str
    nullable: bool = True
    categories: list[str] | None = None


class InputSchema(_StablePickle):
    """The columns a model reads, and its label."""

    label: str
    positive: str
    negative: str
    features: list[FeatureSpec]
    source: str = "inferred"

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_pandera(self, *, training: bool, float_columns=()) -> pa.DataFrameSchema:
        """Build the pandera schema that enforces these columns.

        Args:
            training: Also require observed nullability, known categories and no all-null
                column (training data); scoring batches only need the columns and types.
            float_columns: Columns the frame to check already holds as float64: their type
                is checked as it is, not coerced (coercing copies the column, for nothing).
        """
        float_columns = set(float_columns)
        columns = {}
        for f in self.features:
            checks = []
            if f.kind == "numeric":
                checks.append(
                    pa.Check(
                        lambda s: np.isfinite(s) | s.isna(),
                        name="finite",
                    )
                )
                dtype = float
            else:  # category sets are not enforced: unseen categories are scored as unknown
                dtype = None
            if training:
                checks.append(
                    pa.Check(
                        lambda s: bool(s.notna().any()),
                        element_wise=False,
                        ignore_na=False,  # it looks at the nulls itself: no dropna copy first
                        name="not_all_null",
                    )
                )
            columns[f.name] = pa.Column(
                dtype,
                checks=checks,
                nullable=f.nullable if training else True,
                coerce=f.kind == "numeric" and f.name not in float_columns,
                required=True,
            )
        return pa.DataFrameSchema(columns, strict=False, name=f"rareflow:{self.label}")

    def to_module_source(self, *, class_name: str = "TrainingData", origin: str = "") -> str:
        """Render a pandera DataFrameModel module a user can commit and edit."""
        lines = [
            '"""pandera schema inferred by `rareflow schema infer`'
            + (f" from {origin}." if origin else "."),
            "",
            "Edit the checks, commit this file, and train with",
            f"--config (schema_model: 'module:{class_name}').",
            '"""',
            "",
            "import pandera.pandas as pa",
            "from pandera.typing import Series",
            "",
            "",
            f"class {class_name}(pa.DataFrameModel):",
            f'    """Training data for label {self.label!r} (positive: {self.positive!r})."""',
            "",
        ]
        used: set[str] = set()
        for f in self.features:
            attr = _identifier(f.name, used)
            args = [f"nullable={f.nullable}"]
            if f.kind == "categorical" and f.categories is not None:
                args.insert(0, f"isin={f.categories!r}")
            if attr != f.name:
                args.append(f"alias={f.name!r}")
            py_type = "float" if f.kind == "numeric" else "str"
            lines.append(f"    {attr}: Series[{py_type}] = pa.Field({', '.join(args)})")
        label_attr = _identifier(self.label, used)
        label_args = [f"isin={sorted([self.negative, self.positive])!r}"]
        if label_attr != self.label:
            label_args.append(f"alias={self.label!r}")
        lines.append(f"    {label_attr}: Series[str] = pa.Field({', '.join(label_args)})")
        lines += ["", "    class Config:", "        strict = False", "        coerce = True", ""]
        return "\n".join(lines)


def infer_input_schema(
    df: pd.DataFrame, *, label: str, positive: str, negative: str
) -> InputSchema:
    """Infer feature kinds, nullability and category sets from training data.

    Numbers (and booleans stored as 0/1) are numeric; text, categories and booleans are
    categorical. Every column but the label is a feature.
    """
    features = []
    for name in df.columns:
        if name == label:
            continue
        s = df[name]
        kind = "numeric" if _is_numeric(s) else "categorical"
        categories = None
        if kind == "categorical":
            # count the distinct values (missing ones left out), then compare them as text
            counts = s.value_counts(dropna=True)
            counts = counts[counts > 0]  # a categorical dtype lists unseen categories
            nullable = int(counts.sum()) < len(s)
            values = set(map(str, counts.index))
            if len(values) <= MAX_STORED_CATEGORIES:
                categories = sorted(values)
        else:
            nullable = bool(s.isna().any())
        features.append(
            FeatureSpec(
                name=str(name),
                kind=kind,
                dtype=str(s.dtype),
                nullable=nullable,
                categories=categories,
            )
        )
    return InputSchema(label=label, positive=positive, negative=negative, features=features)


def schema_from_model(
    model: type[pa.DataFrameModel], *, label: str, positive: str, negative: str
) -> InputSchema:
    """Derive an :class:`InputSchema` from a hand-written pandera DataFrameModel."""
    schema = model.to_schema()
    if label not in schema.columns:
        raise ConfigError(
            f"schema {model.__name__} has no column for the label {label!r}; "
            f"its columns are {list(schema.columns)}"
        )
    features = []
    for name, column in schema.columns.items():
        if name == label:
            continue
        dtype = str(column.dtype)
        numeric = any(t in dtype for t in ("int", "float", "uint")) and "str" not in dtype
        categories = None
        for check in column.checks:
            allowed = check.statistics.get("allowed_values") if check.statistics else None
            if allowed is not None and not numeric:
                categories = sorted(str(v) for v in allowed)
        features.append(
            FeatureSpec(
                name=name,
                kind="numeric" if numeric else "categorical",
                dtype=dtype,
                nullable=bool(column.nullable),
                categories=categories,
            )
        )
    return InputSchema(
        label=label, positive=positive, negative=negative, features=features, source=model.__name__
    )


def import_schema_module(module_name: str):
    """A module by import name; or from a file: 'path/to/file.py', or 'module' as
    ./module.py when the working directory is not on the import path (console scripts)."""
    local = Path(module_name.replace(".", "/") + ".py")
    if not module_name.endswith(".py"):
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError:
            if not local.is_file():
                raise
    path = Path(module_name) if module_name.endswith(".py") else local
    if not path.is_file():
        raise ModuleNotFoundError(f"no file {str(path)!r}")
    spec = importlib.util.spec_from_file_location(f"rareflow_schema_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_schema_model(spec: str) -> type[pa.DataFrameModel]:
    """Import a DataFrameModel named 'package.module:ClassName' or 'path/file.py:ClassName'."""
    module_name, _, class_name = spec.rpartition(":")
    if not module_name or not class_name:
        raise ConfigError(f"schema_model must look like 'module:ClassName'; got {spec!r}")
    try:
        module = import_schema_module(module_name)
        model = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import schema_model {spec!r}: {exc}") from exc
    if not (isinstance(model, type) and issubclass(model, pa.DataFrameModel)):
        raise ConfigError(f"schema_model {spec!r} is not a pandera DataFrameModel")
    return model


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _identifier(name: str, used: set[str]) -> str:
    ident = re.sub(r"\W", "_", str(name)).strip("_") or "column"
    if ident[0].isdigit():
        ident = f"c_{ident}"
    if keyword.iskeyword(ident):
        ident += "_"
    base, i = ident, 2
    while ident in used:
        ident = f"{base}_{i}"
        i += 1
    used.add(ident)
    return ident
