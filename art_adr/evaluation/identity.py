"""Which checkpoint was evaluated: its file, epoch and SHA-256 (reports and the evaluation cache name it)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["file_sha256", "checkpoint_info"]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_info(path: str | os.PathLike, ckpt: Mapping[str, Any] | None = None,
                    prefer: str = "best") -> dict[str, Any]:
    """``{"file", "epoch", "sha256"}`` of a checkpoint (a run directory resolves to ``checkpoints/<prefer>.pt``);
    ``epoch`` is ``None`` when the checkpoint does not record one. ``ckpt``: the already loaded dict."""
    from ..checkpoint import load_checkpoint, resolve_checkpoint

    file = resolve_checkpoint(path, prefer)
    ckpt = ckpt if ckpt is not None else load_checkpoint(file)
    epoch = ckpt.get("epoch")
    return {"file": str(file), "epoch": int(epoch) if epoch is not None else None, "sha256": file_sha256(file)}
