"""The `sample` setting of a training run: train on every positive and a share of the
negatives of a source larger than memory (:mod:`tasks.data.negative_sample` reads it)."""

from __future__ import annotations

from pydantic import Field

SAMPLE_ROWS = 2_000_000  # `sample: auto`: the rows a training window is sampled down to


def check_sample(value):
    """A negative sample rate in (0, 1], `auto`, or empty (every row)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("sample must be a share of the negative rows (e.g. 0.1) or auto, not "
                         "true/false")
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = float("nan")
    if not 0 < rate <= 1:
        raise ValueError("sample must be the share of negative rows kept, above 0 and at most "
                         "1 (e.g. 0.1), or auto")
    return rate


def sample_field():
    return Field(None, description="Sources larger than memory: keep every positive and this "
                 "share of the negatives (0 < sample <= 1), chosen by a hash of each row's "
                 "content and the seed while the source is read; kept negatives weigh 1/sample, "
                 "so costs, threshold, gates and scores stay in the population's units. `auto`: "
                 "`sample_rows` / the rows read, keeping about `sample_rows` rows plus the "
                 "positives. Default: every row.")


def sample_rows_field():
    return Field(SAMPLE_ROWS, ge=1000, description="`sample: auto`: the rows the window is "
                 "sampled down to (positives are all kept).")
