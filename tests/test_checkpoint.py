"""Model directories: round trips, clear errors for every kind of damage, the lookup order."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanocode import checkpoint, lookup
from nanocode.checkpoint import CheckpointError, find_model, load_model, save_model
from nanocode.model import ModelConfig
from test_model import random_model


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return random_model(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=32), seed=3)


@pytest.fixture
def saved(tmp_path, model, tiny_tokenizer):
    return save_model(tmp_path / "m", model, tiny_tokenizer, meta={"stage": "sft", "step": 12})


def leaves(model):
    return jax.tree.leaves(nnx.state(model, nnx.Param))


def test_round_trip_is_exact(saved, model, tiny_tokenizer, tmp_path):
    loaded, tok, info = load_model(saved)
    assert loaded.config == model.config
    assert all(np.array_equal(a, b) and b.dtype == jnp.float32 for a, b in zip(leaves(model), leaves(loaded)))
    assert tok.encode("def f(x):\n") == tiny_tokenizer.encode("def f(x):\n")
    assert info["meta"] == {"stage": "sft", "step": 12} and info["params_dtype"] == "float32"
    assert info["path"] == str(saved)
    assert sorted(os.listdir(saved)) == ["config.json", "params", "sha256.json", "tokenizer.json"]
    assert os.listdir(tmp_path) == ["m"]  # no temporary directories left behind


def test_bf16_shipping_loads_back_as_fp32_and_overwrites_atomically(saved, model, tiny_tokenizer, tmp_path):
    save_model(saved, model, tiny_tokenizer, dtype=jnp.bfloat16)  # over the existing directory
    loaded, _, info = load_model(saved)
    assert info["params_dtype"] == "bfloat16" and info["meta"] == {}
    for a, b in zip(leaves(model), leaves(loaded)):
        assert b.dtype == jnp.float32
        np.testing.assert_allclose(b, a, rtol=1e-2, atol=1e-6)
        np.testing.assert_array_equal(b, a.astype(jnp.bfloat16).astype(jnp.float32))
    assert os.listdir(tmp_path) == ["m"]


def test_saving_params_needs_a_matching_config(model, tiny_tokenizer, tmp_path):
    params = nnx.state(model, nnx.Param)
    path = save_model(tmp_path / "p", params, tiny_tokenizer, config=model.config)
    assert load_model(path)[0].config == model.config
    with pytest.raises(ValueError, match="pass config="):
        save_model(tmp_path / "q", params, tiny_tokenizer)
    wrong = ModelConfig(depth=2, vocab_size=model.config.vocab_size, seq_len=32)
    with pytest.raises(CheckpointError, match="do not match the model config"):
        save_model(tmp_path / "q", params, tiny_tokenizer, config=wrong)
    small = ModelConfig(depth=1, vocab_size=100, seq_len=32)
    with pytest.raises(ValueError, match="the tokenizer has .* tokens but the model only 100"):
        save_model(tmp_path / "q", random_model(small), tiny_tokenizer)
    assert sorted(os.listdir(tmp_path)) == ["p"]


def test_missing_or_bad_config(saved):
    (saved / "sha256.json").unlink()  # as a model saved before manifests: the checks behind them still hold
    config = saved / "config.json"
    text = config.read_text()
    config.write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{config} is not valid JSON"):
        load_model(saved)
    info = json.loads(text)
    info["model"]["depth"] = 0
    config.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="bad \"model\" section: .*depth must be a positive integer"):
        load_model(saved)
    config.unlink()
    with pytest.raises(CheckpointError, match=f"{config} is missing"):
        load_model(saved)
    with pytest.raises(CheckpointError, match="model directory not found"):
        load_model(saved / "nope")


def test_config_params_shape_mismatch(saved):
    (saved / "sha256.json").unlink()
    config = saved / "config.json"
    info = json.loads(config.read_text())
    info["model"]["depth"] = 2
    config.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="params do not match the model config .*"
                                              "config.json does not describe these parameters"):
        load_model(saved)


# Orbax leaves a read future behind when its metadata is unreadable; it later fails on a closed event loop
# in a background thread (noise from orbax, after load_model has raised its CheckpointError).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_params_and_tokenizer(saved, tmp_path, model, tiny_tokenizer):
    for f in (saved / "params" / "d").iterdir():  # truncate the array data
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{saved / 'params' / 'd'}/.* bytes, .* when it was saved"):
        load_model(saved)  # the manifest names the truncated file before orbax reads it
    (saved / "sha256.json").unlink()
    with pytest.raises(CheckpointError, match=f"{saved / 'params'} .*damaged or incomplete"):
        load_model(saved)
    shutil.rmtree(saved / "params")
    with pytest.raises(CheckpointError, match=f"{saved / 'params'} is missing"):
        load_model(saved)
    other = save_model(tmp_path / "t", model, tiny_tokenizer)
    (other / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_model(other)


def test_find_model_order(saved, tmp_path, monkeypatch, model, tiny_tokenizer):
    home, shipped = tmp_path / "home", tmp_path / "shipped"
    monkeypatch.setenv("NANOCODE_HOME", str(home))
    monkeypatch.delenv("NANOCODE_MODEL", raising=False)
    monkeypatch.setattr(lookup, "shipped_dir", lambda: shipped)
    with pytest.raises(CheckpointError) as e:
        find_model()
    assert checkpoint.TRAIN_COMMAND in str(e.value) and "--model PATH" in str(e.value)
    shutil.copytree(saved, shipped)
    assert find_model() == shipped
    older = save_model(home / "models" / "run1", model, tiny_tokenizer)
    newer = save_model(home / "models" / "run2" / "sft", model, tiny_tokenizer)
    os.utime(older / "config.json", (1, 1))
    assert find_model() == newer
    monkeypatch.setenv("NANOCODE_MODEL", str(older))
    assert find_model() == older
    assert find_model(str(saved)) == saved
    with pytest.raises(CheckpointError, match=f"--model {tmp_path / 'none'}: no model there"):
        find_model(str(tmp_path / "none"))
    monkeypatch.setenv("NANOCODE_MODEL", str(tmp_path / "none"))
    with pytest.raises(CheckpointError, match="NANOCODE_MODEL"):
        find_model()
