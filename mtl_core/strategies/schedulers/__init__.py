"""Task schedulers: which tasks contribute a loss at a step."""
from mtl_core.strategies.schedulers.all_tasks import AllTasks
from mtl_core.strategies.schedulers.curriculum import Curriculum
from mtl_core.strategies.schedulers.dsg import DynamicStopAndGo
from mtl_core.strategies.schedulers.round_robin import RoundRobin
from mtl_core.strategies.schedulers.sampling import Sampling
from mtl_core.strategies.schedulers.sequential import Sequential

REGISTRY = {cls.name: cls for cls in (AllTasks, Sequential, RoundRobin, Sampling, DynamicStopAndGo, Curriculum)}
