"""Task schedulers: which tasks contribute a loss at a step."""
from mtl_core.strategies.schedulers.all_tasks import AllTasks

REGISTRY = {cls.name: cls for cls in (AllTasks,)}
