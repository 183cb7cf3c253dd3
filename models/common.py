"""Checks shared by the model families."""

from __future__ import annotations

from mpbench.data.base import DataInfo


def require_images(model_name: str, data: DataInfo) -> None:
    """Image classifiers need (C, H, W) samples and a class count; say so in one line otherwise."""
    if data.task != "classification":
        raise ValueError(f"model {model_name} needs a classification dataset; {data.name} is a {data.task} dataset")
    if len(data.input_shape) != 3 or not data.num_classes:
        raise ValueError(f"model {model_name} needs images (C, H, W) and a class count; {data.name} has "
                         f"input shape {data.input_shape} and {data.num_classes} classes")
