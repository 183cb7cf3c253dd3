"""The algorithm registry: a name (the `algorithm` config group's `name`) -> (settings, class)."""

from algorithms.backprop import Backprop
from algorithms.data_parallel import DataParallel

ALGORITHMS = {
    "backprop": (Backprop.Settings, Backprop),
    "data_parallel": (DataParallel.Settings, DataParallel),
}
