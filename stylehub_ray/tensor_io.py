"""Tensors to bytes and back: the one place the project calls ``torch.load``.

Every load is ``weights_only=True``: a file read from a run directory, a shared bucket or a
user's path can hold tensors, plain containers and numbers, never code to run. Saving goes
through :func:`tensor_bytes` so every writer (model artifacts, training checkpoints) produces
the same format.
"""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO


def tensor_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` (a state dict, or containers of tensors and numbers) as bytes."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_tensors(obj: Any, path: str | os.PathLike) -> None:
    """:func:`tensor_bytes` into a local file."""
    with open(path, "wb") as f:
        f.write(tensor_bytes(obj))


def load_tensors(source: bytes | str | os.PathLike | BinaryIO, map_location: str = "cpu"
                 ) -> Any:
    """Load what :func:`tensor_bytes` wrote (bytes, a local path or a binary file object);
    ``weights_only=True``, so a file that holds anything but tensors and plain data is refused
    (``pickle.UnpicklingError``) instead of run."""
    import torch

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    return torch.load(source, map_location=map_location, weights_only=True)
