"""The algorithm registry: a name (the `algorithm` config group's `name`) -> (settings, class)."""

from algorithms.backprop import Backprop
from algorithms.data_parallel import DataParallel
from algorithms.local_learning import (CriticTrainingSettings, DGLSettings, LocalCritic, SubModelBackprop,
                                      SyntheticGradients)
from algorithms.pipeline import HyPar, Pipeline
from algorithms.stale_gradient import DDGSettings, FeaturesReplaySettings, OuroborosSettings, StaleGradient

ALGORITHMS = {
    "backprop": (Backprop.Settings, Backprop),
    "data_parallel": (DataParallel.Settings, DataParallel),
    "pipeline": (Pipeline.Settings, Pipeline),
    "hypar": (HyPar.Settings, HyPar),
    # One family, three configurations of it (algorithms/stale_gradient.py).
    "ddg": (DDGSettings, StaleGradient),
    "features_replay": (FeaturesReplaySettings, StaleGradient),
    "ouroboros": (OuroborosSettings, StaleGradient),
    # Local learning (algorithms/local_learning.py).
    "local_critic": (LocalCritic.Settings, LocalCritic),
    "critic_training": (CriticTrainingSettings, LocalCritic),
    "dgl": (DGLSettings, LocalCritic),
    "dni": (SyntheticGradients.Settings, SyntheticGradients),
    "sub_model_backprop": (SubModelBackprop.Settings, SubModelBackprop),  # Table 4's comparison
}
