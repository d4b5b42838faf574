"""The training engine: an explicit loop on accelerate, checkpoints, resume, metrics and listeners.

The runner calls :func:`train`; :func:`find_last_checkpoint` tells whether a run folder can be resumed.
"""

from tunekit.engine.checkpoint import config_fingerprint, find_last_checkpoint
from tunekit.engine.events import Listener
from tunekit.engine.loop import TrainResult, train

__all__ = ["Listener", "TrainResult", "config_fingerprint", "find_last_checkpoint", "train"]
