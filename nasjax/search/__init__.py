"""Search strategies as pure, jittable ask/tell functions, and the host loop `run`.

    strategy = nasjax.search.make("evolution", space, population_size=50)
    state = strategy.init(key); archs, state = strategy.ask(state, n); state = strategy.tell(...)
    result = nasjax.search.run(strategy, objective, budget=200, key=key, workdir="runs/x")
    final = jax.jit(jax.vmap(lambda k: nasjax.search.scan(strategy, objective, k, rounds, batch)))(keys)
"""

from nasjax.search.base import (STRATEGIES, History, ModelBased, State, Strategy, WorkQueue,
                                make, register)
from nasjax.search.bo import BayesOpt
from nasjax.search.evolution import RegularizedEvolution
from nasjax.search.hyperband import Hyperband, SuccessiveHalving
from nasjax.search.lanas import LaNAS, RegressionTree
from nasjax.search.lanas_bo import LaNASBO
from nasjax.search.local_search import LocalSearch
from nasjax.search.loop import SearchResult, run, scan
from nasjax.search.mcts import MCTS, MCTSGlobal, MCTSSequential
from nasjax.search.nao import NAO
from nasjax.search.random_search import RandomSearch
from nasjax.search.rnas import RNAS
from nasjax.search.tpe import TPE

__all__ = ["STRATEGIES", "BayesOpt", "History", "Hyperband", "LaNAS", "LaNASBO", "LocalSearch", "MCTS", "MCTSGlobal",
           "MCTSSequential", "ModelBased", "NAO", "RandomSearch", "RNAS", "RegressionTree", "RegularizedEvolution",
           "SearchResult", "State", "Strategy", "SuccessiveHalving", "TPE", "WorkQueue", "make", "register", "run", "scan"]
