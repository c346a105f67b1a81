"""enet: ENet semantic segmentation (Paszke et al. 2016) for training, evaluation and deployment."""

from .checkpoint import load_checkpoint, save_checkpoint
from .convert import convert_checkpoint
from .data.classes import CLASS_SETS, ClassSet, class_set
from .errors import CheckpointError, EnetError
from .model import ENet, transfer_encoder

__all__ = [
    "CLASS_SETS",
    "CheckpointError",
    "ClassSet",
    "ENet",
    "EnetError",
    "class_set",
    "convert_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "transfer_encoder",
]

__version__ = "0.1.0"
