"""enet: ENet semantic segmentation (Paszke et al. 2016) for training, evaluation and deployment.

The public API is imported on first use (PEP 562), so that ``enet infer`` or
``import enet.deploy`` do not load the training stack they never run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_API = {
    "CLASS_SETS": "enet.data.classes",
    "ClassSet": "enet.data.classes",
    "class_set": "enet.data.classes",
    "CheckpointError": "enet.errors",
    "EnetError": "enet.errors",
    "ENet": "enet.model",
    "transfer_encoder": "enet.model",
    "load_checkpoint": "enet.checkpoint",
    "save_checkpoint": "enet.checkpoint",
    "convert_checkpoint": "enet.convert",
    "prepare": "enet.data.prepare",
    "synthesize": "enet.data.synthetic",
    "TrainConfig": "enet.train.config",
    "load_config": "enet.train.config",
    "train": "enet.train.engine",
    "evaluate_checkpoint": "enet.evaluate.seed",
    "evaluate_cityscapes": "enet.evaluate.cityscapes",
    "export_onnx": "enet.deploy.export",
    "load_predictor": "enet.deploy.backends",
    "run_inference": "enet.deploy.infer",
    "Segmenter": "enet.deploy.segmenter",
    "Segmentation": "enet.deploy.segmenter",
}

__all__ = [
    "CLASS_SETS",
    "CheckpointError",
    "ClassSet",
    "ENet",
    "EnetError",
    "Segmentation",
    "Segmenter",
    "TrainConfig",
    "class_set",
    "convert_checkpoint",
    "evaluate_checkpoint",
    "evaluate_cityscapes",
    "export_onnx",
    "load_checkpoint",
    "load_config",
    "load_predictor",
    "prepare",
    "run_inference",
    "save_checkpoint",
    "synthesize",
    "train",
    "transfer_encoder",
]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'enet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


if TYPE_CHECKING:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .convert import convert_checkpoint
    from .data.classes import CLASS_SETS, ClassSet, class_set
    from .data.prepare import prepare
    from .data.synthetic import synthesize
    from .deploy.backends import load_predictor
    from .deploy.export import export_onnx
    from .deploy.infer import run_inference
    from .deploy.segmenter import Segmentation, Segmenter
    from .errors import CheckpointError, EnetError
    from .evaluate.cityscapes import evaluate_cityscapes
    from .evaluate.seed import evaluate_checkpoint
    from .model import ENet, transfer_encoder
    from .train.config import TrainConfig, load_config
    from .train.engine import train
