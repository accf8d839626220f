"""Training: protocols (`TrainConfig`), one `TrainState`, the optax optimizers (`optim`: SGD, ASGD, clipping),
image train/eval steps (`steps`), the executions of a population (`executions`: per architecture, layered,
masked, sharded) and `train_population`, one loop over an execution; language models on Penn Treebank
and the recurrent weight-sharing supernet: `nasjax.train.lm`; the CNN supernet: `weight_sharing`."""

from nasjax.train import lm

from nasjax.train.masked import embed, extract
from nasjax.train.population import (ArchResult, PopulationState, arch_key, load_population, results,
                                     save_population, select, train_population)
from nasjax.train.protocol import PRESETS, TrainConfig, preset
from nasjax.train.optim import make_optimizer
from nasjax.train.state import TrainState, create_state
from nasjax.train.steps import accuracy, cross_entropy, module_apply, train_epoch, train_step

__all__ = ["ArchResult", "PRESETS", "PopulationState", "TrainConfig", "TrainState",
           "accuracy", "arch_key", "lm", "create_state", "cross_entropy", "embed", "extract", "load_population",
           "make_optimizer", "module_apply", "preset", "results",
           "save_population", "select", "train_epoch", "train_population", "train_step"]
