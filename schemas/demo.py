"""The demo data's contract: a hand-written pandera DataFrameModel."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

MERCHANT_CATEGORIES = [
    "grocery",
    "fuel",
    "restaurants",
    "travel",
    "electronics",
    "gift_cards",
    "fashion",
    "pharmacy",
    "entertainment",
    "utilities",
    "crypto",
    "marketplace",
]
CHANNELS = ["pos", "online", "atm", "phone"]
COUNTRIES = ["home", "neighbour_a", "neighbour_b", "eu", "us", "asia", "latam", "other"]


class DemoTransactions(pa.DataFrameModel):
    """Card transactions; ``is_fraud`` = 1 marks the rare positive class."""

    amount: Series[float] = pa.Field(ge=0, description="Transaction amount.")
    hour: Series[int] = pa.Field(ge=0, le=23, description="Hour of day, local time.")
    account_age_days: Series[int] = pa.Field(ge=0)
    txn_count_24h: Series[int] = pa.Field(ge=0, description="Card's transactions in 24 h.")
    distance_from_home_km: Series[float] = pa.Field(ge=0, nullable=True)
    device_risk_score: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    customer_age: Series[float] = pa.Field(ge=18, le=120, nullable=True)
    velocity_ratio: Series[float] = pa.Field(ge=0)
    card_present: Series[int] = pa.Field(isin=[0, 1])
    merchant_category: Series[str] = pa.Field(isin=MERCHANT_CATEGORIES)
    channel: Series[str] = pa.Field(isin=CHANNELS)
    country: Series[str] = pa.Field(isin=COUNTRIES, nullable=True)
    is_fraud: Series[int] = pa.Field(isin=[0, 1], description="Label: 1 = fraud.")

    class Config:
        strict = False
        coerce = True


LABEL = "is_fraud"
POSITIVE = "1"
