"""Loss combiners: how active losses or gradients become one update."""
from mtl_core.strategies.combiners.equal import Equal

REGISTRY = {cls.name: cls for cls in (Equal,)}
