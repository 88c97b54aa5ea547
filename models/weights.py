"""Weights from any fsspec URI (local path, s3://, gs://, ...), loaded with `weights_only=True`.

A file that needs code to unpickle is refused, never executed. Errors name the URI and the fix.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from .errors import StorageError, UserInputError
from .retry import RetryPolicy
from .storage_client import read_uri

__all__ = ["LoadedWeights", "read_weights", "load_into"]

# Checkpoints often wrap the state dict; these keys are unwrapped in this order.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "generator")


@dataclass(frozen=True)
class LoadedWeights:
    state_dict: dict[str, torch.Tensor]
    sha256: str
    uri: str


def read_weights(uri: str, storage_options: Mapping[str, Any] | None = None,
                 retry: RetryPolicy | None = None) -> LoadedWeights:
    """Read a state dict from `uri`; raises UserInputError when unreadable or unsafe."""
    try:
        blob = read_uri(uri, storage_options, retry)
    except StorageError:
        raise
    except (FileNotFoundError, IsADirectoryError) as e:
        raise UserInputError(f"weights {uri!r} not found; check the path or URI") from e
    except PermissionError as e:
        raise UserInputError(f"weights {uri!r} are not readable (permission denied); check credentials") from e
    except (OSError, ValueError, ImportError) as e:
        raise UserInputError(f"cannot read weights {uri!r}: {_one_line(e)}") from e
    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # garbage also fails the weights-only unpickler, without a GLOBAL
            raise UserInputError(f"weights {uri!r} are not a PyTorch checkpoint ({_one_line(e)}); "
                                 "pass a file written by torch.save(model.state_dict(), path)") from e
        raise UserInputError(
            f"weights {uri!r} refused: the file needs code to unpickle (unsafe with weights_only=True); "
            "re-save it as a plain state dict with torch.save(model.state_dict(), path)") from e
    except Exception as e:  # torch raises RuntimeError/EOFError/... for non-checkpoints
        raise UserInputError(f"weights {uri!r} are not a PyTorch checkpoint ({_one_line(e)}); "
                             "pass a file written by torch.save(model.state_dict(), path)") from e
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserInputError(f"weights {uri!r} hold no state dict of tensors; "
                             "pass a file written by torch.save(model.state_dict(), path)")
    return LoadedWeights(dict(obj), hashlib.sha256(blob).hexdigest(), uri)


def load_into(net: nn.Module, weights: LoadedWeights, model_name: str) -> None:
    """Copy `weights` into `net` strictly; a mismatch names the missing and unexpected keys."""
    own = net.state_dict()
    missing = [k for k in own if k not in weights.state_dict]
    unexpected = [k for k in weights.state_dict if k not in own]
    wrong = [k for k, v in weights.state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {_few(wrong)}")
        raise UserInputError(f"weights {weights.uri!r} do not fit model {model_name!r} ({'; '.join(parts)}); "
                             "pass weights saved from this architecture")
    net.load_state_dict(weights.state_dict, strict=True)


def _few(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
