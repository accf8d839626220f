"""What the scripts in experiments/ share, so that each script is a thin `main` (flags, calls, tables,
plots): flag checking and the one-line error exit (`cli`), the work directory (`workdir`: lock,
config, data fingerprint, summary check), the `001_*` evaluation protocol (`evaluation`), successive
halving over trained architectures (`halving`), searches on benchmarks, vmapped or host loops
(`tabular_search`), one-shot evaluation on a supernet (`one_shot`), output folders (`outputs`) and
timing (`timing`). Above search, benchmarks, train and distributed; nothing in nasjax imports it."""

from nasjax.experiment.cli import UsageError
from nasjax.experiment.evaluation import (CONVNET_SPACES, final_data, final_evaluation, group_stats,
                                          make_objective, search_data)
from nasjax.experiment.workdir import begin, check_config, data_fingerprint, finished, own_workdir

__all__ = ["CONVNET_SPACES", "UsageError", "begin", "check_config", "data_fingerprint", "final_data",
           "final_evaluation", "finished", "group_stats", "make_objective", "own_workdir", "search_data"]
