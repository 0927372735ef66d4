"""How a stored version's scores are compared with the scores it gave when it was written."""

import numpy as np

# The scores of an old version computed on another CPU may differ in the last bit: numpy picks
# its SIMD kernels (exp, sums) by the instruction set, and the fixtures were written on a
# machine with AVX-512. On an AMD EPYC without it, 1 row in 200 differed by 1.1e-16 (1 ulp).
# The decisions are compared exactly.
SCORE_RTOL = 1e-12


def assert_same_scores(actual, expected) -> None:
    np.testing.assert_allclose(actual, expected, rtol=SCORE_RTOL, atol=0)
