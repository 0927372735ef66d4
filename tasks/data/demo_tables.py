"""Generators of realistic fraud-like demo data, so the quickstart needs no download: one table
(:func:`make_demo_data`), and a time-stamped stream with late labels and a concept drift
(:func:`make_stream`) for the loop demo and the replay benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from schemas.demo import CHANNELS, COUNTRIES, LABEL, MERCHANT_CATEGORIES
from schemas.demo import DemoTransactions as S
from tasks.data.labels import utc

MERCHANTS = np.array(MERCHANT_CATEGORIES)
MERCHANT_P = np.array([0.2, 0.12, 0.14, 0.06, 0.07, 0.03, 0.1, 0.06, 0.06, 0.08, 0.01, 0.07])
RISKY_MERCHANTS = {"electronics": 1.1, "gift_cards": 1.6, "crypto": 1.8, "travel": 0.4}
CHANNELS_ARR = np.array(CHANNELS)
COUNTRIES_ARR = np.array(COUNTRIES)
COUNTRY_P = np.array([0.78, 0.06, 0.04, 0.04, 0.03, 0.02, 0.02, 0.01])
COLUMNS = [S.amount, S.hour, S.account_age_days, S.txn_count_24h, S.distance_from_home_km,
           S.device_risk_score, S.customer_age, S.velocity_ratio, S.card_present,
           S.merchant_category, S.channel, S.country, LABEL]


def make_demo_data(
    n_rows: int = 100_000,
    *,
    positive_rate: float = 0.015,
    drift: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Make a fraud-like table with numeric and categorical columns and missing values.

    The label ``is_fraud`` (1 = fraud) depends on the inputs through a noisy, partly
    non-linear link, so a good model finds a real but imperfect signal. With
    ``drift=True`` the inputs shift (bigger amounts, more online traffic, more missing
    device scores) and the positives carry a much weaker signal, so a model trained on
    undrifted data loses minority-class recall at its threshold.

    Args:
        n_rows: Number of rows.
        positive_rate: Expected share of positive rows (the intercept is solved for it).
        drift: Make a later, drifted batch.
        seed: Random seed; the same seed gives the same table.

    Returns:
        The table, label last.

    Example:
        >>> df = make_demo_data(1000, seed=1)
        >>> sorted(df["is_fraud"].unique().tolist())
        [0, 1]
    """
    if n_rows < 10:
        raise ValueError(f"n_rows must be at least 10; got {n_rows}")
    if not 0 < positive_rate < 0.5:
        raise ValueError(f"positive_rate must be in (0, 0.5); got {positive_rate}")
    rng = np.random.default_rng(seed + (7919 if drift else 0))
    cols = _draw_inputs(rng, n_rows, drift=drift)
    signal = (0.8 if drift else 2.0) * _risk_signal(cols)
    intercept = brentq(lambda b: expit(b + signal).mean() - positive_rate, -30, 10)
    cols[LABEL] = (rng.random(n_rows) < expit(intercept + signal)).astype(int)
    shown = {S.distance_from_home_km: np.round(cols[S.distance_from_home_km], 2),
             S.device_risk_score: np.round(cols[S.device_risk_score], 4),
             S.country: cols[S.country].astype(object)}  # the risk used unrounded values
    df = pd.DataFrame({name: shown.get(name, cols[name]) for name in COLUMNS})
    missing = {
        S.distance_from_home_km: 0.08,
        S.device_risk_score: 0.05 + (0.10 if drift else 0.0),
        S.customer_age: 0.02,
        S.country: 0.03,
    }
    for column, rate in missing.items():
        df.loc[rng.random(n_rows) < rate, column] = np.nan
    return df


def _draw_inputs(rng: np.random.Generator, n: int, *, drift: bool,
                 channel_p: list[float] | None = None) -> dict:
    """The input columns (and the log amount the risk is built on), in a fixed draw order."""
    shift = 0.35 if drift else 0.0
    log_amount = rng.normal(3.4 + shift, 1.1, n)
    cols = {"log_amount": log_amount, S.amount: np.round(np.exp(log_amount), 2)}
    cols[S.hour] = rng.choice(24, size=n, p=_hour_profile()).astype(int)
    cols[S.account_age_days] = np.floor(rng.exponential(700, n)).astype(int)
    cols[S.txn_count_24h] = rng.poisson(2.0 + shift * 2, n).astype(int)
    cols[S.distance_from_home_km] = rng.lognormal(2.0 + shift, 1.3, n)
    cols[S.device_risk_score] = rng.beta(2, 5 - 1.5 * shift, n)
    cols[S.customer_age] = np.clip(rng.normal(44, 15, n), 18, 95).round()
    cols[S.merchant_category] = rng.choice(MERCHANTS, size=n, p=MERCHANT_P)
    if channel_p is None:
        channel_p = [0.45, 0.4, 0.1, 0.05] if not drift else [0.3, 0.55, 0.1, 0.05]
    channel = rng.choice(CHANNELS_ARR, size=n, p=channel_p)
    cols[S.channel] = channel
    cols[S.country] = rng.choice(COUNTRIES_ARR, size=n, p=COUNTRY_P)
    card_present = ((channel == "pos") | (channel == "atm")).astype(int)
    cols[S.card_present] = np.where(rng.random(n) < 0.03, 1 - card_present, card_present)
    cols[S.velocity_ratio] = np.round(rng.gamma(2.0, 0.5, n) * (1 + 0.3 * shift), 4)
    return cols


def _risk_signal(cols: dict) -> np.ndarray:
    """The true risk: additive terms, an interaction and a threshold effect."""
    z = (cols["log_amount"] - 3.4) / 1.1
    hour, country = cols[S.hour], cols[S.country]
    night = ((hour <= 5) | (hour >= 23)).astype(float)
    merchant_risk = np.vectorize(lambda m: RISKY_MERCHANTS.get(m, 0.0))(cols[S.merchant_category])
    new_online = ((cols[S.channel] == "online") & (cols[S.account_age_days] < 60)).astype(float)
    foreign = (country != "home").astype(float)
    return (
        0.8 * z
        + 0.7 * night
        + merchant_risk
        + 1.3 * new_online
        + 2.2 * (cols[S.device_risk_score] - 0.29)
        + 0.25 * np.log1p(cols[S.distance_from_home_km])
        + 0.5 * foreign
        + 0.15 * (cols[S.txn_count_24h] - 2)
        - 0.6 * cols[S.card_present]
        + 0.9 * (cols[S.velocity_ratio] > 2.5)
        + 0.6 * z * foreign
        - 0.2 * ((cols[S.customer_age] - 44) / 15)
    )


def _hour_profile() -> np.ndarray:
    hours = np.arange(24)
    weight = 0.3 + np.exp(-((hours - 14) ** 2) / 30.0)
    return weight / weight.sum()


# -- a stream over time ---------------------------------------------------------------------------
EVENT_TIME = "event_time"
LABEL_TIME = "label_time"
STREAM_START = "2025-01-06"  # a Monday: the replay benchmark's fixed calendar
RING_CHANNEL_P = [0.43, 0.39, 0.09, 0.09]  # the ring's calls add phone traffic
RING_MERCHANTS = {"travel": 1.0, "marketplace": 1.0, "pharmacy": 0.8}
CONCEPT, NEW_INPUTS = "concept", "new-inputs"  # where the ring shows: the link only, or its inputs
STREAM_VARIANTS = (CONCEPT, NEW_INPUTS)
RING_SHARE = 0.03  # new-inputs: the share of each day's rows that are the ring's own
RING_FRAUD_RATE = 0.3  # new-inputs: the share of the ring's rows that are fraud


def _ring_signal(cols: dict) -> np.ndarray:
    """The fraud pattern after the drift: an account-takeover ring working established
    accounts over the phone, in office hours, at travel, marketplace and pharmacy merchants,
    with bursts of activity; the old pattern keeps 40 % of its strength."""
    hour = cols[S.hour]
    merchant = np.vectorize(lambda m: RING_MERCHANTS.get(m, 0.0))(cols[S.merchant_category])
    return (0.4 * _risk_signal(cols)
            + 1.6 * (cols[S.channel] == "phone")
            + 1.0 * ((hour >= 9) & (hour <= 17))
            + merchant
            + 1.1 * (cols[S.account_age_days] > 700)
            + 0.9 * (cols[S.velocity_ratio] > 1.5)
            - 0.5 * cols[S.card_present])


def _ring_inputs(rng: np.random.Generator, n: int) -> dict:
    """The ring's own transactions (``new-inputs``): accounts opened in the last two months
    (synthetic identities), buying online (some by phone) in office hours at marketplace,
    travel and pharmacy merchants, for mid-sized amounts, a little faster than usual; the
    columns of :func:`_draw_inputs`."""
    log_amount = rng.normal(3.6, 0.5, n)
    cols = {"log_amount": log_amount, S.amount: np.round(np.exp(log_amount), 2)}
    cols[S.hour] = rng.integers(9, 18, n).astype(int)
    cols[S.account_age_days] = rng.integers(0, 60, n).astype(int)
    cols[S.txn_count_24h] = rng.poisson(3.0, n).astype(int)
    cols[S.distance_from_home_km] = rng.lognormal(2.0, 1.3, n)
    cols[S.device_risk_score] = rng.beta(2, 5, n)
    cols[S.customer_age] = np.clip(rng.normal(44, 15, n), 18, 95).round()
    cols[S.merchant_category] = rng.choice(list(RING_MERCHANTS), size=n, p=[0.3, 0.5, 0.2])
    cols[S.channel] = np.where(rng.random(n) < 0.8, "online", "phone")
    cols[S.country] = np.full(n, "home", dtype=object)
    cols[S.card_present] = np.zeros(n, dtype=int)
    cols[S.velocity_ratio] = np.round(rng.gamma(2.0, 0.5, n) * 1.3, 4)
    return cols


def stream_start(weeks: int, *, today: pd.Timestamp | str | None = None) -> pd.Timestamp:
    """The Monday (00:00 UTC) ``weeks`` whole weeks before the one that starts today's week, so
    a stream of that many weeks ends at the last whole week before today.

    The demo dates its stream this way: its data source is then current whenever it is
    generated, so deployments that train as of now find its rows. Only the dates move (by
    whole weeks, so weekdays stay); the rows drawn, and every figure, are the same.

    Example:
        >>> str(stream_start(2, today="2026-12-04").date())  # a Friday
        '2026-11-16'
    """
    now = utc(pd.Timestamp.now(tz="UTC") if today is None else today)
    monday = now.normalize() - pd.Timedelta(days=now.weekday())
    return monday - pd.Timedelta(weeks=weeks)


def make_stream(
    weeks: int = 20,
    *,
    rows_per_day: int = 1000,
    positive_rate: float = 0.015,
    drift_week: int | None = 10,
    label_delay_days: tuple[float, float] = (14.0, 28.0),
    start: str | pd.Timestamp = STREAM_START,
    seed: int = 0,
    variant: str = CONCEPT,
) -> pd.DataFrame:
    """A time-stamped stream of demo transactions whose labels arrive late and whose fraud
    pattern changes at a known week.

    Every day has ``rows_per_day`` rows with an ``event_time`` inside that day (UTC); each
    row's label becomes known at ``label_time``, uniformly 14 to 28 days later (chargebacks).
    From ``drift_week`` on (weeks count from 0) the fraud pattern changes: an account-takeover
    ring (see :func:`_ring_signal`) replaces most of the old pattern, and its calls raise the
    phone channel's share from 5 % to 9 %. The positive rate stays ``positive_rate`` on both
    sides (the intercept is solved for it).

    ``variant="new-inputs"``: the ring arrives with transactions of its own instead
    (:func:`_ring_inputs`: ``RING_SHARE`` of each day's rows, new accounts buying online at
    marketplace, travel and pharmacy merchants for mid-sized amounts), a ``RING_FRAUD_RATE``
    of them fraud by the ring's pattern; every other row keeps the old link between inputs
    and label, so fraud rises above ``positive_rate`` after the drift.

    Returns:
        The rows in time order: ``event_time``, the demo columns, ``is_fraud``, ``label_time``.

    Example:
        >>> s = make_stream(2, rows_per_day=50, drift_week=1)
        >>> len(s), s["event_time"].is_monotonic_increasing
        (700, True)
    """
    if weeks < 1 or rows_per_day < 10:
        raise ValueError(f"weeks must be >= 1 and rows_per_day >= 10; got {weeks}, "
                         f"{rows_per_day}")
    if variant not in STREAM_VARIANTS:
        raise ValueError(f"variant must be one of {STREAM_VARIANTS}; got {variant!r}")
    days = weeks * 7
    drift_day = days if drift_week is None else drift_week * 7
    parts = [_stream_day(day, rows_per_day, after=day >= drift_day, seed=seed, variant=variant)
             for day in range(days)]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ring_rows = cols.pop("ring_row")
    after = ring_rows if variant == NEW_INPUTS else np.repeat(np.arange(days) >= drift_day,
                                                              rows_per_day)
    signal = np.where(after, 2.0 * cols.pop("ring"), 2.0 * cols.pop("risk"))
    rng = np.random.default_rng([seed, 104729])
    y = np.zeros(len(signal), dtype=int)
    rates = (RING_FRAUD_RATE if variant == NEW_INPUTS else positive_rate, positive_rate)
    for side, rate in zip((after, ~after), rates, strict=True):
        if side.any():
            b = brentq(lambda v, z=signal[side], r=rate: expit(v + z).mean() - r, -30, 10)
            y[side] = rng.random(int(side.sum())) < expit(b + signal[side])
    cols[LABEL] = y
    return _stream_frame(cols, start=start, rng=rng, delay=label_delay_days)


def _stream_day(day: int, n: int, *, after: bool, seed: int, variant: str = CONCEPT) -> dict:
    """One day's inputs, their second of the day, both risk signals and which rows are the
    ring's own (``new-inputs`` after the drift)."""
    rng = np.random.default_rng([seed, day])
    if variant == NEW_INPUTS and after:
        k = int(round(RING_SHARE * n))
        cols = _draw_inputs(rng, n - k, drift=False)
        ring = _ring_inputs(rng, k)
        cols = {c: np.concatenate([cols[c], ring[c]]) for c in cols}
        cols["ring_row"] = np.arange(n) >= n - k
    else:
        cols = _draw_inputs(rng, n, drift=False,
                            channel_p=RING_CHANNEL_P if after and variant == CONCEPT else None)
        cols["ring_row"] = np.zeros(n, dtype=bool)
    second = cols[S.hour] * 3600 + rng.integers(0, 3600, n)  # the hour column is UTC here
    order = np.argsort(second, kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    cols["second"] = second[order] + day * 86_400
    cols["risk"] = _risk_signal(cols)
    cols["ring"] = _ring_signal(cols)
    return cols


def _stream_frame(cols: dict, *, start: str | pd.Timestamp, rng: np.random.Generator,
                  delay: tuple[float, float]) -> pd.DataFrame:
    n = len(cols[LABEL])
    t0 = utc(start)
    event = t0 + pd.to_timedelta(cols["second"], unit="s")
    late = pd.to_timedelta(np.round(rng.uniform(delay[0], delay[1], n) * 86_400), unit="s")
    shown = {S.distance_from_home_km: np.round(cols[S.distance_from_home_km], 2),
             S.device_risk_score: np.round(cols[S.device_risk_score], 4),
             S.country: cols[S.country].astype(object)}
    df = pd.DataFrame({EVENT_TIME: event,
                       **{name: shown.get(name, cols[name]) for name in COLUMNS},
                       LABEL_TIME: event + late})
    for column, rate in ((S.distance_from_home_km, 0.08), (S.device_risk_score, 0.05),
                         (S.customer_age, 0.02), (S.country, 0.03)):
        df.loc[rng.random(n) < rate, column] = np.nan
    return df
