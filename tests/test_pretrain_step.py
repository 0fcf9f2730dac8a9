"""The pretraining machinery piece by piece: the fused head + cross-entropy against the plain one, the
optimiser split and schedule, stacked Muon, the checkpoint wrapper's handling of damaged and half-written
checkpoints, and one step on 8 devices (data parallel and FSDP) against the same step on 1."""
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nanocode.model import GPT, ModelConfig
from training.checkpointing import Checkpoints
from training.config import TrainConfig, TrainConfigError, from_preset
from training.losses import token_losses, token_losses_eval
from training.optim import lr_multiplier, make_optimizer, param_labels
from training.train_step import lm_loss_fn

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("vocab", [300, 384])  # 300: the head is padded to 384 columns that are not tokens
def test_fused_head_cross_entropy_matches_the_model_logits(vocab):
    model = GPT(ModelConfig(depth=2, vocab_size=vocab, seq_len=64), rngs=nnx.Rngs(0), dtype=jnp.float32)
    model.lm_head[...] = model.lm_head[...] * 3000  # logits large enough for the soft-cap to matter
    graphdef, params = nnx.split(model)
    ids = jax.random.randint(jax.random.key(1), (2, 17), 0, vocab)
    weights = jax.random.uniform(jax.random.key(2), (2, 16))  # per-token weights, as an SFT mask gives

    def reference(p):
        logits = nnx.merge(graphdef, p)(ids[:, :-1])
        return (optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]) * weights).sum()

    def fused(p):
        return (token_losses(nnx.merge(graphdef, p), ids[:, :-1], ids[:, 1:]) * weights).sum()

    def evaluated(p):
        return (token_losses_eval(nnx.merge(graphdef, p), ids[:, :-1], ids[:, 1:]) * weights).sum()

    (l_ref, g_ref), (l_fused, g_fused) = (jax.jit(jax.value_and_grad(f))(params) for f in (reference, fused))
    assert float(l_fused) == pytest.approx(float(l_ref), rel=1e-6)
    assert float(jax.jit(evaluated)(params)) == pytest.approx(float(l_ref), rel=1e-6)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_fused)):
        np.testing.assert_allclose(b, a, atol=1e-4 * float(jnp.abs(a).max() + 1e-12))


def test_optimizer_groups_and_schedule():
    params = nnx.split(GPT(ModelConfig(depth=2, vocab_size=300, seq_len=64), rngs=nnx.Rngs(0)))[1].to_pure_dict()
    labels = param_labels(params)
    assert labels["wte"] == "embed" and labels["lm_head"] == "head"
    assert {labels["blocks"][0]["attn"]["c_qkv"], labels["blocks"][1]["mlp"]["c_proj"]} == {"matrix"}
    mult = [float(lr_multiplier(s, 100, 0.1, 0.2, 0.0)) for s in (0, 9, 10, 50, 79, 80, 90, 99)]
    assert mult == pytest.approx([0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.05])
    # Muon on same-shaped matrices stacked (batched Newton-Schulz) is the same update as one by one.
    cfg = replace(from_preset("test"), muon_dtype="float32")
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape) * 1e-2, params)
    updates = []
    for stack in (True, False):
        opt = make_optimizer(replace(cfg, muon_stack=stack), 100)
        updates.append(jax.jit(opt.update)(grads, opt.init(params), params)[0])
    for a, b in zip(jax.tree.leaves(updates[0]), jax.tree.leaves(updates[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_config_rejects_what_it_cannot_run():
    with pytest.raises(TrainConfigError, match="not a multiple"):
        TrainConfig(seq_len=64, device_batch=4, total_batch=300)
    with pytest.raises(TrainConfigError, match="does not divide"):
        TrainConfig(seq_len=64, device_batch=4, total_batch=512).grad_accum(3)
    assert TrainConfig(seq_len=64, device_batch=4, total_batch=512).grad_accum(2) == 1
    params = from_preset("gpu").model_config(32768).num_params()  # depth 12: 135M
    assert from_preset("gpu").total_steps(32768) == -(-20 * params // 2**19)  # Chinchilla: 20 tokens/param


def test_residual_dtype_option_resolves_and_reaches_the_loss(monkeypatch):
    with pytest.raises(TrainConfigError, match="--residual-dtype must be auto, bfloat16 or float32"):
        TrainConfig(seq_len=64, device_batch=4, total_batch=512, residual_dtype="float16")
    cfg = from_preset("test")
    assert cfg.residual_dtype == "auto" and cfg.residual_jnp_dtype() == jnp.float32  # CPU computes in fp32
    assert replace(cfg, residual_dtype="bfloat16").residual_jnp_dtype() == jnp.bfloat16
    monkeypatch.setattr("nanocode.runtime.backend", lambda: "gpu")  # auto follows the compute dtype
    assert cfg.residual_jnp_dtype() == jnp.bfloat16
    # The train step's loss through a bf16-residual graphdef: the same weights, a loss within bf16 rounding.
    model_cfg = cfg.model_config(300)
    params = nnx.split(GPT(model_cfg, rngs=nnx.Rngs(0), dtype=jnp.float32))[1]
    tokens = {"tokens": jax.random.randint(jax.random.key(3), (4, cfg.seq_len + 1), 0, 300)}
    losses = []
    for residual in (jnp.float32, jnp.bfloat16):
        graphdef = nnx.split(nnx.eval_shape(lambda: GPT(model_cfg, rngs=nnx.Rngs(0), dtype=jnp.float32,
                                                        residual_dtype=residual)))[0]
        loss_sum, weight = jax.jit(lm_loss_fn(graphdef))(params, tokens)
        losses.append(float(loss_sum / weight))
    assert losses[0] != losses[1] and losses[1] == pytest.approx(losses[0], rel=1e-2)


def test_damaged_and_half_written_checkpoints_are_never_loaded(tmp_path):
    messages = []
    ckpt = Checkpoints(tmp_path / "ckpt", keep=3, log=messages.append)
    state = lambda s: {"step": jnp.int32(s), "w": jnp.full((64, 64), float(s))}  # noqa: E731
    for s in (1, 2, 3):
        ckpt.save(s, state(s), {"step": s})
    ckpt.close()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state(0))
    # A save killed mid-write leaves a temporary directory: never a step.
    (tmp_path / "ckpt" / "4.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)
    # A finished step damaged afterwards: truncated files.
    for f in (tmp_path / "ckpt" / "3" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    step, restored, meta = Checkpoints(tmp_path / "ckpt", log=messages.append).restore_latest(abstract)
    assert step == 2 and meta == {"step": 2} and float(restored["w"][0, 0]) == 2.0
    assert len(messages) == 1 and "step 3" in messages[0] and "unusable" in messages[0]
    assert (tmp_path / "ckpt_corrupt").is_dir() and not (tmp_path / "ckpt" / "3").exists()
    # A step whose directory lacks an item is unusable too, and with nothing left restore says None.
    (tmp_path / "ckpt" / "2" / "meta" / "metadata").unlink()
    (tmp_path / "ckpt" / "1" / "state").rename(tmp_path / "elsewhere")
    assert Checkpoints(tmp_path / "ckpt", log=messages.append).restore_latest(abstract) is None
    assert len(messages) == 3


EIGHT_DEVICES = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from nanocode.model import GPT
    from training import mesh as meshlib
    from training.config import from_preset
    from training.optim import make_optimizer
    from training.train_step import init_state, lm_loss_fn, make_train_step, sharded_init

    cfg = from_preset("test", muon_dtype="float32")
    model_cfg = cfg.model_config(512)
    graphdef = nnx.split(nnx.eval_shape(lambda: GPT(model_cfg, rngs=nnx.Rngs(0))))[0]
    optimizer = make_optimizer(cfg, 16)
    build = lambda: init_state(nnx.split(GPT(model_cfg, rngs=nnx.Rngs(0)))[1].to_pure_dict(), optimizer)
    tokens = np.asarray(jax.random.randint(jax.random.key(7), (2, 8, cfg.seq_len + 1), 0, 512), np.int32)
    results = {}
    for name, devices, fsdp in (("one", jax.devices()[:1], False), ("dp8", jax.devices(), False),
                                ("fsdp8", jax.devices(), True)):
        mesh = meshlib.make_mesh(devices)
        state, shardings = sharded_init(build, mesh, fsdp)
        bs = meshlib.batch_sharding(mesh)
        step = make_train_step(lm_loss_fn(graphdef), optimizer, shardings, bs)
        batch = {"tokens": meshlib.global_batch(tokens, bs, tokens.shape)}
        losses = []
        for _ in range(2):
            state, metrics = step(state, batch)
            losses.append(float(metrics["loss"]))
        c_fc = state["params"]["blocks"][0]["mlp"]["c_fc"]
        results[name] = {"losses": losses, "params": [np.asarray(x).ravel()[:2000].tolist()
                                                      for x in jax.tree.leaves(state["params"])],
                         "c_fc_shards": len({str(s.index) for s in c_fc.addressable_shards}),
                         "batch_shards": len({str(s.index) for s in batch["tokens"].addressable_shards})}
    print(json.dumps(results))
""")


def test_a_step_on_8_devices_matches_1_device_data_parallel_and_fsdp():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    one = results["one"]
    assert one["c_fc_shards"] == 1
    assert results["dp8"]["c_fc_shards"] == 1 and results["dp8"]["batch_shards"] == 8  # replicated weights
    assert results["fsdp8"]["c_fc_shards"] == 8  # each device holds 1/8 of the weight
    for name in ("dp8", "fsdp8"):
        np.testing.assert_allclose(results[name]["losses"], one["losses"], rtol=2e-6)
        for a, b in zip(results[name]["params"], one["params"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bench_train_rows_and_the_rope_check_on_this_backend():
    """`nanocode bench train` runs the real step at a tiny shape in each form of ops.qkv_heads, and
    --check-rope (the on-device check of every form, the Pallas kernel included) finds them all equal to
    split_heads + autodiff."""
    from training import bench_train
    rows = bench_train.run((1,), (2,), (32,), 256, 1, rope_impl=("flip", "pallas"), echo=lambda _: None)
    assert [r["rope_impl"] for r in rows] == ["flip", "pallas"]
    assert all("error" not in r and r["tok_s"] > 0 and np.isfinite(r["loss"]) for r in rows)
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-4)
    checks = bench_train.check_rope(1, 2, 32, ("auto", "flip", "pallas"), echo=lambda _: None)
    assert [c["rope_impl"] for c in checks] == ["auto", "flip", "pallas"]
    for c in checks:
        assert "error" not in c and max(c["q"], c["k"], c["v"], c["dqkv"]) < 1e-5, c


def test_bench_train_main_validates_its_flags(capsys):
    """bench_train.main(argv), what `nanocode bench train ARGS` runs: the CLI's flags, bad ones refused with
    exit status 2 and a message that names them."""
    from training import bench_train
    for args, message in ((["--depth", "a,2"], "--depth, --batch and --seq take integers"),
                          (["--matmul-dtype", "fp16"], "--matmul-dtype auto, float32 or bfloat16 (got ['fp16'])"),
                          (["--remat", "some"], "--remat takes none, dots or full (got ['some'])"),
                          (["--steps", "0"], "--depth/--batch/--seq/--steps/--repeat must be positive"),
                          (["--rope-impl", "split"], "--rope-impl takes auto, flip, pallas (got split)")):
        with pytest.raises(SystemExit) as exit_:
            bench_train.main(args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err, args
    args = ["--depth", "1", "--batch", "2", "--seq", "32", "--vocab", "256", "--steps", "1", "--no-fsdp",
            "--matmul-dtype", "float32"]
    assert bench_train.main(args) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["fsdp"], r["matmul"]) for r in rows] == [(False, "float32")]
    # A run that fails (an unknown Muon dtype: TrainConfig refuses it) is a row with its error: exit status 1.
    assert bench_train.main(args + ["--muon-dtype", "float16"]) == 1
    assert "1 of 1 runs failed" in capsys.readouterr().err


def test_bench_train_command_compares_matmul_dtypes_and_rejects_bad_flags():
    from typer.testing import CliRunner

    from nanocode.cli import app
    args = ["bench", "train", "--depth", "1", "--batch", "2", "--seq", "32", "--vocab", "256", "--steps", "1"]
    result = CliRunner().invoke(app, args + ["--matmul-dtype", "float32,bfloat16"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["matmul"] for r in rows] == ["float32", "bfloat16"]
    assert all(r["tok_s"] > 0 and np.isfinite(r["loss"]) for r in rows)
    result = CliRunner().invoke(app, args + ["--matmul-dtype", "fp16"])
    assert result.exit_code != 0 and "--matmul-dtype auto, float32 or bfloat16 (got ['fp16'])" in result.output
