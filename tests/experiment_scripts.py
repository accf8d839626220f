"""Scripts of experiments/ loaded as modules, for tests that call their functions in process."""

import functools
import importlib.util
import pathlib
import sys

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


@functools.cache
def load_experiment(name: str):
    """The module of `experiments/<name>.py` (loaded once; registered in sys.modules, where its
    dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
