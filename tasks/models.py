"""Where rareflow 0.1 kept its model classes: kept so that its model.joblib files still load.

A pickle names each class by module and name, and versions registered before the 0.2 layout
name ``tasks.models.<Class>``. New code imports these from their own modules
(:mod:`tasks.candidates`, :mod:`tasks.estimators`, :mod:`tasks.lean`, :mod:`tasks.served`);
nothing else belongs here. ``tests/unit/test_compat.py`` loads such versions.
"""

from tasks.candidates import CandidateSpec
from tasks.estimators import (
    BlendClassifier,
    ClassWeightedEstimator,
    CrossValBag,
    FeatureMatrix,
    FrameCaster,
    IsolationForestClassifier,
    PlattCalibrated,
)
from tasks.lean import CodedHistGradientBoostingClassifier
from tasks.served import ThresholdedModel

__all__ = [
    "BlendClassifier",
    "CandidateSpec",
    "ClassWeightedEstimator",
    "CodedHistGradientBoostingClassifier",
    "CrossValBag",
    "FeatureMatrix",
    "FrameCaster",
    "IsolationForestClassifier",
    "PlattCalibrated",
    "ThresholdedModel",
]
