"""enet: ENet semantic segmentation (Paszke et al. 2016) for training, evaluation and deployment."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .convert import convert_checkpoint
from .data.classes import CLASS_SETS, ClassSet, class_set
from .data.prepare import prepare
from .data.synthetic import synthesize
from .engine import train
from .errors import CheckpointError, EnetError
from .evaluate import evaluate_checkpoint, evaluate_cityscapes
from .model import ENet, transfer_encoder

__all__ = [
    "CLASS_SETS",
    "CheckpointError",
    "ClassSet",
    "ENet",
    "EnetError",
    "TrainConfig",
    "class_set",
    "convert_checkpoint",
    "evaluate_checkpoint",
    "evaluate_cityscapes",
    "load_checkpoint",
    "load_config",
    "prepare",
    "save_checkpoint",
    "synthesize",
    "train",
    "transfer_encoder",
]

__version__ = "0.1.0"
