"""Reading checkpoints safely: official `.pth` files (`torch.load(weights_only=True)`, no fallback) and transformers
model folders, as the weight ports (`convert`) need them."""

import argparse
import importlib
import json
import os
import pickle
from collections.abc import Iterable, Mapping

import torch

from .port_rules import ConversionError

STATE_DICT_ENTRIES = ("model", "state_dict", "module")  # where official checkpoints keep the weights


class CheckpointLoadError(RuntimeError):
    """`torch.load(weights_only=True)` refused a checkpoint (it pickles a class that is not allowed)."""


def _qualified_name(entry) -> str:
    """The name torch's weights-only unpickler matches: `(obj, "name")` entries carry theirs."""
    if isinstance(entry, tuple):
        return entry[1]
    return f"{getattr(entry, '__module__', None)}.{entry.__qualname__}"


def _resolve_class(name_or_class):
    """`"package.module.Class"` -> the class (classes pass through). When the object now lives elsewhere (a file
    pickled `numpy.core.multiarray.scalar`, which numpy 2 defines in `numpy._core`), returns `(obj, name)` so torch
    matches the name written in the file."""
    if not isinstance(name_or_class, str):
        return name_or_class
    module_name, _, attribute = name_or_class.rpartition(".")
    if not module_name:
        raise ValueError(f"allowed class {name_or_class!r} must be a fully qualified name such as 'numpy.dtype'.")
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj if _qualified_name(obj) == name_or_class else (obj, name_or_class)


def _with_numpy_dtypes(entries: list) -> list:
    """Numpy scalars pickle as `numpy._core.multiarray.scalar(dtype, bytes)` plus a dtype class per scalar type
    (`numpy.dtypes.Int64DType`, ...), which torch only reports one at a time. Allowing anything from numpy allows the
    dtype classes with it (plain type descriptors)."""
    if not any(_qualified_name(entry).startswith("numpy") for entry in entries):
        return entries
    import numpy as np

    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return entries + [np.dtype] + [c for c in dtype_classes if isinstance(c, type)]


def load_official_checkpoint(path, allowed_classes: Iterable = ()) -> dict:
    """Load a `.pth` checkpoint safely: `torch.load(weights_only=True)` allowing `argparse.Namespace` (the `args`
    official LiVT/MAE/DeiT-LT checkpoints pickle) and the `allowed_classes` given (classes or qualified names).

    A `.safetensors` file is read with safetensors. Returns the loaded dict (e.g. `{"model": ..., "args": ...}`).
    Raises `CheckpointLoadError` naming the refused classes and the ways forward.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    allowed = _with_numpy_dtypes([argparse.Namespace] + [_resolve_class(c) for c in allowed_classes])
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # the listing is a courtesy; the original error still explains
            refused = []
        allowed_names = {_qualified_name(c) for c in allowed}
        refused = [name for name in refused if name not in allowed_names]
        listed = ", ".join(refused) if refused else "(see the message below)"
        raise CheckpointLoadError(
            f"torch.load(weights_only=True) refused {path}: it pickles Python objects other than tensors, "
            f"containers and argparse.Namespace: {listed}.\n"
            "This converter never falls back to weights_only=False (that would run arbitrary code from the file). "
            "To proceed, either:\n"
            "  1. re-save only the weights, in an environment where the file's classes import and you trust it:\n"
            "       ckpt = torch.load(path, map_location='cpu', weights_only=False)\n"
            "       torch.save({'model': ckpt['model']}, 'weights_only.pth')\n"
            "     and convert 'weights_only.pth'; or\n"
            "  2. if you trust the file, allow the listed classes: `--allowed_classes "
            f"{','.join(refused) or 'package.module.Class'}` (or `allowed_classes=[...]` in Python).\n"
            f"torch's message: {error}"
        ) from error
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"{path} holds a {type(checkpoint).__name__}, not a dict of weights.")
    return dict(checkpoint)


def extract_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The weights of an official checkpoint: its `model` (or `state_dict`/`module`) entry, or the dict itself when
    it holds only tensors. A DDP `module.` prefix shared by every key is removed."""
    state_dict = None
    for entry in STATE_DICT_ENTRIES:
        if isinstance(checkpoint.get(entry), Mapping):
            state_dict = checkpoint[entry]
            break
    if state_dict is None:
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            state_dict = checkpoint
        else:
            raise ConversionError(
                f"no weights found: the checkpoint has entries {sorted(checkpoint)} but none of "
                f"{list(STATE_DICT_ENTRIES)}, and it is not a plain state dict."
            )
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConversionError(f"the state dict has non-tensor entries: {not_tensors}.")
    state_dict = dict(state_dict)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def checkpoint_args(checkpoint: Mapping) -> dict:
    """The training arguments pickled with an official checkpoint (`args`, an `argparse.Namespace`) as a dict."""
    args = checkpoint.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else {}


def load_hf_state_dict(folder) -> dict[str, torch.Tensor]:
    """The tensors of a transformers model folder, exactly as saved (safetensors, sharded or not, or
    `pytorch_model.bin` read with weights_only=True)."""
    from safetensors.torch import load_file

    folder = os.fspath(folder)
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single):
        return load_file(single, device="cpu")
    for index_name, loader in (
        ("model.safetensors.index.json", lambda p: load_file(p, device="cpu")),
        ("pytorch_model.bin.index.json", lambda p: torch.load(p, map_location="cpu", weights_only=True)),
    ):
        index = os.path.join(folder, index_name)
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state_dict = {}
            for shard in shards:
                state_dict.update(loader(os.path.join(folder, shard)))
            return state_dict
    binary = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(binary):
        return extract_state_dict(load_official_checkpoint(binary))
    raise FileNotFoundError(f"{folder} has no model.safetensors, sharded index or pytorch_model.bin.")


def load_folder_config(folder, expected_model_types: tuple[str, ...], hint: str) -> dict:
    """A transformers folder's `config.json` as a dict, checked to be of one of `expected_model_types`."""
    path = os.path.join(os.fspath(folder), "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} has no config.json: not a transformers model folder.")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("model_type") not in expected_model_types:
        raise ConversionError(
            f"{folder} holds a {config.get('model_type')!r} model ({config.get('architectures')}); expected "
            f"model_type {list(expected_model_types)}. {hint}"
        )
    return config
