"""imbalanced-learn samplers, chosen by name; they always sit inside an imblearn Pipeline."""

from __future__ import annotations

import logging

from imblearn.combine import SMOTEENN, SMOTETomek
from imblearn.over_sampling import ADASYN, SMOTE, SMOTENC, BorderlineSMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler

from schemas.config import NUMERIC_ONLY_SAMPLERS, SAMPLERS
from schemas.errors import ConfigError

logger = logging.getLogger(__name__)

TARGET_RATIO = 0.5  # minority/majority after resampling: enough signal without doubling data


def sampling_strategy(minority_share: float):
    """Resample up (or down) to TARGET_RATIO, or fully balance if already above it."""
    ratio = minority_share / (1 - minority_share)
    return TARGET_RATIO if ratio < TARGET_RATIO else "auto"


def make_sampler(
    name: str,
    *,
    categorical_idx: list[int],
    min_class_rows: int,
    minority_share: float,
    seed: int,
):
    """Return the sampler called ``name`` (None for 'none').

    SMOTE and its combinations become SMOTENC when there are categorical columns (they
    arrive ordinal-encoded at the given positions). ``k_neighbors`` shrinks to what the
    smallest class in a training fold allows.

    Raises:
        ConfigError: unknown name, or an interpolating sampler that cannot handle
            categorical columns, or too few minority rows to interpolate.
    """
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")
    if name == "none":
        return None
    strategy = sampling_strategy(minority_share)
    if name == "random_over":
        return RandomOverSampler(sampling_strategy=strategy, random_state=seed)
    if name == "random_under":
        return RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
    k = min(5, min_class_rows - 1)
    if k < 1:
        raise ConfigError(
            f"sampler {name!r} needs at least 2 minority rows in each training fold; "
            f"there are {min_class_rows}: use 'random_over' or 'none'"
        )
    if categorical_idx and name in NUMERIC_ONLY_SAMPLERS:
        raise ConfigError(
            f"sampler {name!r} interpolates numbers and cannot handle the categorical columns "
            "of this data; use 'smote' (SMOTENC is used automatically), 'smoteenn', "
            "'smotetomek' or 'random_over'"
        )

    def smote():
        if categorical_idx:
            return SMOTENC(
                categorical_features=categorical_idx,
                sampling_strategy=strategy,
                k_neighbors=k,
                random_state=seed,
            )
        return SMOTE(sampling_strategy=strategy, k_neighbors=k, random_state=seed)

    if name == "smote":
        return smote()
    if name == "adasyn":
        return ADASYN(sampling_strategy=strategy, n_neighbors=k, random_state=seed)
    if name == "borderline_smote":
        return BorderlineSMOTE(sampling_strategy=strategy, k_neighbors=k, random_state=seed)
    if name == "smoteenn":
        return SMOTEENN(smote=smote(), random_state=seed)
    return SMOTETomek(smote=smote(), random_state=seed)
