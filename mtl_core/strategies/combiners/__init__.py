"""Loss combiners: how active losses or gradients become one update. One module per method."""
from mtl_core.strategies.combiners.aligned_mtl import AlignedMTL
from mtl_core.strategies.combiners.cagrad import CAGrad
from mtl_core.strategies.combiners.conflict_free import ConFIG
from mtl_core.strategies.combiners.db_mtl import DBMTL
from mtl_core.strategies.combiners.adaptive import Adaptive
from mtl_core.strategies.combiners.dwa import DWA
from mtl_core.strategies.combiners.equal import Equal
from mtl_core.strategies.combiners.excess_mtl import ExcessMTL
from mtl_core.strategies.combiners.fairgrad import FairGrad
from mtl_core.strategies.combiners.famo import FAMO
from mtl_core.strategies.combiners.fixed import Fixed
from mtl_core.strategies.combiners.gradnorm import GradNorm
from mtl_core.strategies.combiners.gradvac import GradVac
from mtl_core.strategies.combiners.imtl import IMTL
from mtl_core.strategies.combiners.inverse_loss import InverseLoss
from mtl_core.strategies.combiners.learned import Learned
from mtl_core.strategies.combiners.mgda import MGDA
from mtl_core.strategies.combiners.nash_mtl import NashMTL
from mtl_core.strategies.combiners.pcgrad import PCGrad
from mtl_core.strategies.combiners.rlw import RLW
from mtl_core.strategies.combiners.stch import STCH
from mtl_core.strategies.combiners.transferred import Transferred
from mtl_core.strategies.combiners.uncertainty import Uncertainty
from mtl_core.strategies.combiners.upgrad import UPGrad

REGISTRY = {cls.name: cls for cls in (
    Equal, Fixed, Learned, Uncertainty, GradNorm, DWA, Transferred, InverseLoss, Adaptive, RLW,
    FAMO, STCH,
    PCGrad, CAGrad, MGDA, IMTL, NashMTL, AlignedMTL, DBMTL, UPGrad, GradVac, ConFIG, FairGrad, ExcessMTL,
)}
