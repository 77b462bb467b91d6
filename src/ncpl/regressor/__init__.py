"""The NCPL regressor: a pretrained language model reads a serialized config and predicts the loss.

From the bottom up: `serialize` (a config as tokens, every number one placeholder), `encoders`
(a number -> that placeholder's embedding), `backbones` (the pretrained transformer, from a
built-in name, a Hugging Face id or a folder), `network` (backbone + encoder + head),
`precision` (reduced precision where the CPU has it), `dataset` (runs -> training examples and
batches), `train_config` (the settings of a training job, one YAML file of configs/), `heartbeat`
(progress lines through a loop), `trainer` (the two-stage training loop on accelerate), `sizing`
(what a training job costs, before it runs), and on top `predictor.NCPL`, the estimator every
command uses.
"""

from ncpl.regressor.predictor import NCPL
from ncpl.regressor.train_config import TrainConfig

__all__ = ["NCPL", "TrainConfig"]
