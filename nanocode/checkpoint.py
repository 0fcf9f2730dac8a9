"""Model directories: what `nanocode chat` loads and what training stages hand to each other.

    <dir>/config.json     {"format": "nanocode-model", "version": 1, "model": ModelConfig, "params_dtype",
                           "tokenizer_vocab_size", "meta": {training metadata}}
    <dir>/tokenizer.json  the tokenizer (HF `tokenizers` format)
    <dir>/params/         the parameters, an Orbax (StandardCheckpointer) pytree of arrays
    <dir>/sha256.json     size and sha256 of every file above (nanocode/integrity.py), written last

A directory is written into a temporary sibling and renamed into place, so a crash never leaves a
half-written model where a reader looks. Loading checks the files against sha256.json first (a flipped bit
is an error naming the file, not NaN weights) and the parameters for NaN/inf after; a directory without the
manifest (written before it existed) loads unverified. Parameters may be stored in bf16 for shipping (half the size);
they are loaded back as fp32 master weights.

This is the inference format. Training-state checkpoints (optimizer state, data position) are the
trainer's, kept with Orbax's CheckpointManager.
"""
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from nanocode import integrity
from nanocode.lookup import (CONFIG, TRAIN_COMMAND, CheckpointError, find_model, models_dir,  # noqa: F401
                             shipped_dir)
from nanocode.model import GPT, ConfigError, ModelConfig
from nanocode.tokenizer import Tokenizer, TokenizerError

FORMAT, VERSION = "nanocode-model", 1
TOKENIZER, PARAMS = "tokenizer.json", "params"
MODEL_FILES = (CONFIG, TOKENIZER, PARAMS)  # what sha256.json covers: a model directory may hold more (a report)


# --- save ----------------------------------------------------------------------------------------

def save_model(directory, model_or_params, tokenizer: Tokenizer, config: ModelConfig | None = None,
               meta: dict | None = None, dtype=None) -> Path:
    """Write a model directory atomically; returns its path.

    model_or_params: a GPT, or its parameters (an nnx.State from `nnx.split`, or the pure dict of arrays)
    with `config`. dtype: store the parameters in this dtype (e.g. jnp.bfloat16 for shipping)."""
    directory = Path(directory).expanduser().absolute()
    if isinstance(model_or_params, GPT):
        config = config or model_or_params.config
        params = nnx.state(model_or_params, nnx.Param)
    else:
        params = model_or_params
        if config is None:
            raise ValueError("save_model: pass config= when saving parameters rather than a GPT")
    if isinstance(params, nnx.State):
        params = nnx.to_pure_dict(params)
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{config.vocab_size}: they do not belong together")
    _check_shapes(_expected_shapes(config), {k: s for k, (s, _) in _flat_shapes(params).items()},
                  "the parameters given to save_model")
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.dtype(jnp.float32)
    # In a multi-process job orbax refuses process-local jax.Arrays; host numpy arrays it writes as they are.
    as_array = np.asarray if jax.process_count() > 1 else jnp.asarray
    params = jax.tree.map(lambda p: as_array(p).astype(dtype), params)

    if directory.is_dir() and any(directory.iterdir()) and not (directory / CONFIG).is_file():
        raise CheckpointError(f"{directory} exists and is not a nanocode model directory (no {CONFIG}); saving "
                              "would replace it and what it holds: move it away or save the model elsewhere")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        info = {"format": FORMAT, "version": VERSION, "model": config.to_dict(),
                "params_dtype": dtype.name, "tokenizer_vocab_size": tokenizer.vocab_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "meta": meta or {}}
        (tmp / CONFIG).write_text(json.dumps(info, indent=2) + "\n")
        tokenizer.save(tmp / TOKENIZER)
        checkpointer = _one_process_checkpointer()
        checkpointer.save(tmp / PARAMS, params)
        checkpointer.wait_until_finished()
        checkpointer.close()
        integrity.write_manifest(tmp, MODEL_FILES)
        old = None
        if directory.exists():  # move the old one aside first: a rename cannot replace a non-empty dir
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}-{time.time_ns()}")
            directory.rename(old)
        tmp.rename(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _one_process_checkpointer():
    """A model directory is written by one process and read by each for itself: orbax must not wait for the
    job's other processes at its barriers, or a two-process `train base` hangs while process 0 saves and
    the job dies at its shutdown barrier with no model (issue 19)."""
    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}))


# --- load ----------------------------------------------------------------------------------------

def read_info(directory) -> dict:
    """config.json of a model directory, checked; raises CheckpointError naming what is wrong."""
    directory = Path(directory).expanduser()
    path = directory / CONFIG
    if not directory.is_dir():
        raise CheckpointError(f"model directory not found: {directory}")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {directory} is not a nanocode model directory (it needs "
                              f"{CONFIG}, {TOKENIZER} and {PARAMS}/); point --model at one, or train one with "
                              f"`{TRAIN_COMMAND}`")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the model directory is damaged: save or "
                              "copy it again") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nanocode model config (no \"format\": \"{FORMAT}\")")
    if info.get("version") != VERSION:
        raise CheckpointError(f"{path} has format version {info.get('version')!r}; this nanocode reads "
                              f"version {VERSION}")
    try:
        info["config"] = ModelConfig.from_dict(info.get("model"))
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: bad \"model\" section: {e}") from e
    return info


def load_model(directory, *, dtype=None) -> tuple[GPT, Tokenizer, dict]:
    """Load a model directory: (model with fp32 parameters, tokenizer, info).

    info is config.json's content plus "config" (the ModelConfig) and "path". dtype sets the model's
    compute dtype (default: runtime.compute_dtype())."""
    directory = Path(directory).expanduser().absolute()
    if directory.is_dir():
        verify_files(directory)
    info = read_info(directory)
    config: ModelConfig = info["config"]
    try:
        tokenizer = Tokenizer.load(directory / TOKENIZER)
    except TokenizerError as e:
        raise CheckpointError(f"{directory / TOKENIZER}: {e}") from e
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(f"{directory / TOKENIZER} has {tokenizer.vocab_size} tokens but {directory / CONFIG} "
                              f"says the model has {config.vocab_size}: the files do not belong together")

    params_dir = directory / PARAMS
    if not params_dir.is_dir():
        raise CheckpointError(f"{params_dir} is missing; the model directory is incomplete: save or copy it again")
    abstract = nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0), dtype=dtype))
    graphdef, abstract_state = nnx.split(abstract)
    expected = nnx.to_pure_dict(abstract_state)
    quiet_orbax_leftovers()
    checkpointer = _one_process_checkpointer()  # every process of a job loads the whole model for itself
    try:
        try:
            metadata = checkpointer.metadata(params_dir)
            stored = _flat_shapes(getattr(metadata, "item_metadata", metadata))
        except Exception as e:  # orbax raises many kinds on damaged files
            raise CheckpointError(f"{params_dir} cannot be read ({type(e).__name__}: {e}); the parameters are "
                                  "damaged or incomplete: save or copy the model again") from e
        if not stored:  # orbax logs a warning and returns no tree when its metadata is unreadable
            raise CheckpointError(f"{params_dir} holds no readable parameters; they are damaged or incomplete: "
                                  "save or copy the model again")
        _check_shapes({k: s for k, (s, _) in _flat_shapes(expected).items()},
                      {k: s for k, (s, _) in stored.items()}, str(params_dir),
                      hint=f"{directory / CONFIG} does not describe these parameters")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree_util.tree_map_with_path(
            lambda path, x: jax.ShapeDtypeStruct(x.shape, stored[_key(path)][1], sharding=device), expected)
        try:
            restored = checkpointer.restore(params_dir, target)
        except Exception as e:
            raise CheckpointError(f"{params_dir} cannot be restored ({type(e).__name__}: {e}); the parameters "
                                  "are damaged or incomplete: save or copy the model again") from e
    finally:
        checkpointer.close()
    restored = jax.tree.map(lambda p: p.astype(jnp.float32), restored)  # fp32 master weights
    bad = [k for k, x in _flat_leaves(restored).items() if not bool(jnp.isfinite(x).all())]
    if bad:  # a model without sha256.json, or one saved from a diverged run: it could only print garbage
        raise CheckpointError(f"{params_dir} holds NaN or infinite values (in {', '.join(bad[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}); the parameters are damaged: copy or save the "
                              "model again")
    nnx.replace_by_pure_dict(abstract_state, restored)
    model = nnx.merge(graphdef, abstract_state)
    info["path"] = str(directory)
    return model, tokenizer, info


def verify_files(directory: Path) -> bool:
    """The directory's files against its sha256.json: True when they match, False when it has none (a model
    saved before manifests existed loads unverified); a CheckpointError naming the file that differs."""
    try:
        return integrity.verify(directory)
    except integrity.IntegrityError as e:
        raise CheckpointError(f"{e}: the model directory {directory} is damaged; copy it again from where it "
                              "came from, or save it again (rerun the training stage that wrote it)") from e


_quieted = False


def quiet_orbax_leftovers() -> None:
    """After a failed read, orbax leaves futures behind whose callbacks fail on its closed asyncio loop; Python
    prints each as an unraisable 'Event loop is closed' traceback (hundreds of lines around the one-line error
    that says what happened). Drop exactly those; every other unraisable exception is printed as before.
    Installed before orbax reads anything: the callbacks fire while the read is still failing."""
    global _quieted
    if _quieted:
        return
    _quieted, previous = True, sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
            return
        previous(unraisable)
    sys.unraisablehook = hook


def _flat_leaves(tree) -> dict:
    return {_key(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _key(path) -> str:
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _flat_shapes(tree) -> dict:
    """{"blocks/0/attn/c_qkv": (shape, dtype)} for arrays, ShapeDtypeStructs or orbax ArrayMetadata."""
    tree = getattr(tree, "tree", tree)  # orbax TreeMetadata wraps the tree
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {_key(path): (tuple(leaf.shape), jnp.dtype(leaf.dtype)) for path, leaf in leaves}


def _expected_shapes(config: ModelConfig) -> dict:
    abstract = nnx.eval_shape(lambda: GPT(config, rngs=nnx.Rngs(0)))
    return {k: s for k, (s, _) in _flat_shapes(nnx.to_pure_dict(nnx.state(abstract))).items()}


def _check_shapes(expected: dict, got: dict, where: str, hint: str = "") -> None:
    """Both: {path: shape}."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if tuple(expected[k]) != tuple(got[k]))
    if missing or extra or wrong:
        lines = [f"missing {missing[:5]}" if missing else "", f"unexpected {extra[:5]}" if extra else "",
                 "; ".join(f"{k}: expected {expected[k]}, found {got[k]}" for k in wrong[:5])]
        raise CheckpointError(f"{where} do not match the model config ({', '.join(l for l in lines if l)})"
                              + (f"; {hint}" if hint else ""))
