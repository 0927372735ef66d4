"""A generator of realistic fraud-like demo data, so the quickstart needs no download."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from schemas.demo import CHANNELS, COUNTRIES, LABEL, MERCHANT_CATEGORIES
from schemas.demo import DemoTransactions as S

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


def _draw_inputs(rng: np.random.Generator, n: int, *, drift: bool) -> dict:
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
