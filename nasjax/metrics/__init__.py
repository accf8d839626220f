"""Metrics for NAS experiments: search efficiency, rank agreement, landscape, random baselines. Pure numpy/jax."""

from nasjax.metrics.curves import best_so_far, quantile_band, relative_improvement, samples_to_optimum
from nasjax.metrics.landscape import count_local_optima, local_optima
from nasjax.metrics.random_baseline import best_of_k_distribution, best_of_k_mean_std, prob_random_beaten
from nasjax.metrics.ranking import kendall_tau

__all__ = ["best_of_k_distribution", "best_of_k_mean_std", "best_so_far", "count_local_optima", "kendall_tau",
           "local_optima", "prob_random_beaten", "quantile_band", "relative_improvement", "samples_to_optimum"]
