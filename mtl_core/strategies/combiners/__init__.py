"""Loss combiners: how active losses or gradients become one update."""
from mtl_core.strategies.combiners.adaptive import Adaptive
from mtl_core.strategies.combiners.aggregators import CAGrad, MGDA, AlignedMTL, NashMTL, PCGrad
from mtl_core.strategies.combiners.db_mtl import DBMTL
from mtl_core.strategies.combiners.dwa import DWA
from mtl_core.strategies.combiners.equal import Equal
from mtl_core.strategies.combiners.fixed import Fixed
from mtl_core.strategies.combiners.gradnorm import GradNorm
from mtl_core.strategies.combiners.imtl import IMTL
from mtl_core.strategies.combiners.inverse_loss import InverseLoss
from mtl_core.strategies.combiners.learned import Learned
from mtl_core.strategies.combiners.rlw import RLW
from mtl_core.strategies.combiners.uncertainty import Uncertainty

REGISTRY = {cls.name: cls for cls in (
    Equal, Fixed, Learned, Uncertainty, GradNorm, DWA, InverseLoss, Adaptive, RLW,
    PCGrad, CAGrad, MGDA, IMTL, NashMTL, AlignedMTL, DBMTL,
)}
