"""Shared type aliases."""

from __future__ import annotations

import os
from typing import Literal, Union

Modality = str  # "image", "text", or any other content modality name a dataset provides
ImageModality = Literal["image"]
PathLike = Union[str, "os.PathLike[str]"]
Split = Literal["train", "valid", "test"]
SPLIT_CODES: dict[str, int] = {"train": 0, "valid": 1, "test": 2}
