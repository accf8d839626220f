"""The exact distribution of random sampling's best-of-k on a tabular benchmark (`001_*` §3's baseline).

Drawing k architectures uniformly without replacement from N with scores s, sorted s_(1) <= ... <= s_(N),
the best of them is s_(j) with probability P_j = [C(j, k) - C(j - 1, k)] / C(N, k) (j >= k): the k draws
all come from the j lowest, not all from the j - 1 lowest. Ties are harmless: tied positions share a
value. Binomials are taken in log space (lgamma), so N in the tens of thousands is exact to float64.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def _log_comb(n: np.ndarray, k: int) -> np.ndarray:
    """log C(n, k) for n (float64 array), -inf where n < k."""
    n = np.asarray(n, np.float64)
    ok = n >= k
    safe = np.where(ok, n, k)
    return np.where(ok, gammaln(safe + 1) - gammaln(k + 1) - gammaln(safe - k + 1), -np.inf)


def best_of_k_distribution(scores, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(values float64 (N,) ascending, probabilities float64 (N,)): P(best of k random draws without
    replacement = values[j]), position by position. scores: finite float (N,); 1 <= k <= N."""
    values = np.sort(np.asarray(scores, np.float64).ravel())
    n = values.size
    if not np.all(np.isfinite(values)):
        raise ValueError("scores must be finite (drop failed architectures first)")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}] (the number of scores)")
    j = np.arange(1, n + 1)
    log_total = _log_comb(np.array(n), k)
    at_most = np.exp(_log_comb(j, k) - log_total)  # P(best <= values[j - 1])
    return values, np.diff(at_most, prepend=0.0)


def best_of_k_mean_std(scores, k: int) -> tuple[float, float]:
    """Mean and standard deviation of the best of k random draws without replacement from scores."""
    values, p = best_of_k_distribution(scores, k)
    mean = float(np.sum(p * values))
    return mean, float(np.sqrt(max(np.sum(p * (values - mean) ** 2), 0.0)))


def prob_random_beaten(scores, k: int, found) -> np.ndarray:
    """P(best of k random draws < found) + P(= found) / 2, for each value of `found` (float (...,)):
    the probability that random sampling with the same budget does worse, ties counted half."""
    values, p = best_of_k_distribution(scores, k)
    cdf = np.concatenate([[0.0], np.cumsum(p)])
    found = np.asarray(found, np.float64)
    below = cdf[np.searchsorted(values, found, side="left")]
    at_or_below = cdf[np.searchsorted(values, found, side="right")]
    return below + (at_or_below - below) / 2
