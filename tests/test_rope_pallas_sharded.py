"""The Pallas q/k RoPE + QK-norm kernels under a sharded train step (8 CPU devices, the kernels in Pallas's
interpreter): the same loss and parameters as the flip form and as one device, no activation gathered
(each device runs the kernels on its own rows in a shard_map), and where the form "auto" takes them
(nanocode/ops.qkv_heads)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanocode import ops, per_device
from nanocode.model import GPT, ModelConfig, forward

REPO = Path(__file__).resolve().parent.parent

# One plain-SGD step, so that the parameters' updates are the gradients (Adam's first step divides each
# gradient by its own size and turns rounding in a near-zero gradient into a full-size update); a large
# one (lr 100), so that new - old parameters, 0.09 to 1.8 at most per array, stand far above the rounding
# of the parameters themselves.
# Shapes chosen so that no activation shares a shape with a parameter: 16 rows x 32 positions = 512 rows,
# against parameters [1024, 64] (the embedding), [64, 1024] (the head), [64, 128] (q/k/v), [64, 64],
# [64, 256], [256, 64]. Vocabulary 1024 and 64 rows per device: the cross entropy's kernels
# (training/ce_pallas.py) tile them, so the "pallas" runs use those too.
EIGHT_DEVICES = textwrap.dedent("""
    import json, os, re
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np, optax
    from flax import nnx
    from nanocode import ops, per_device
    from nanocode.model import GPT, ModelConfig
    from training import mesh as meshlib
    from training.train_step import init_state, lm_loss_fn, make_train_step, sharded_init

    cfg = ModelConfig(depth=1, vocab_size=1024, seq_len=32, head_dim=16, gqa_ratio=2)
    optimizer = optax.sgd(100.0)  # see the comment above EIGHT_DEVICES

    def build():
        # Every weight random: the zero-initialised output projections would leave q, k and v (and so the
        # gradient kernel) without a gradient.
        leaves, tree = jax.tree.flatten(nnx.split(GPT(cfg, rngs=nnx.Rngs(0)))[1].to_pure_dict())
        keys = jax.random.split(jax.random.key(1), len(leaves))
        return init_state(tree.unflatten([p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]),
                          optimizer)

    tokens = np.asarray(jax.random.randint(jax.random.key(7), (1, 16, cfg.seq_len + 1), 0, 1024), np.int32)
    gathers = lambda hlo: sorted(set(re.findall(r"= (\\w+\\[[\\d,]*\\])\\S* all-gather\\(", hlo)))
    results = {}
    for name, n_dev, fsdp, impl in (("one_flip", 1, False, "flip"), ("dp8_flip", 8, False, "flip"),
                                    ("dp8_pallas", 8, False, "pallas"), ("fsdp8_pallas", 8, True, "pallas")):
        graphdef = nnx.split(nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0))))[0]
        with ops.qkv_form(impl):  # every trace of the step below
            mesh = meshlib.make_mesh(jax.devices()[:n_dev])
            state, shardings = sharded_init(build, mesh, fsdp)
            before = [np.asarray(x) for x in jax.tree.leaves(state["params"])]
            bs = meshlib.batch_sharding(mesh)
            step = make_train_step(lm_loss_fn(graphdef, ce_impl="pallas" if impl == "pallas" else "xla"), optimizer,
                                   shardings, bs)
            batch = {"tokens": meshlib.global_batch(tokens, bs, tokens.shape)}
            row = {}
            if name == "dp8_pallas":
                # The program that runs, compiled once: its collectives. And the same jit traced without the
                # mesh in context, where XLA must gather the kernels' operands: what this check would see.
                row["gathers_without_mesh"] = gathers(step.jitted.lower(state, batch).compile().as_text())
                compiled = step.lower(state, batch).compile()
                row["gathers"] = gathers(compiled.as_text())
                state, metrics = compiled(state, batch)
            else:
                if name == "fsdp8_pallas":
                    row["gathers"] = gathers(step.lower(state, batch).compile().as_text())
                    row["jaxpr"] = str(step.trace(state, batch).jaxpr)
                state, metrics = step(state, batch)
        row["loss"] = float(metrics["loss"])
        row["updates"] = [(np.asarray(x) - b).ravel().tolist() for x, b in zip(jax.tree.leaves(state["params"]), before)]
        results[name] = row
    results["param_shapes"] = sorted({"f32[%s]" % ",".join(map(str, x.shape))
                                      for x in jax.tree.leaves(state["params"])})

    # the form "auto" on an NVIDIA GPU (pretended: the kernels still run interpreted): 8 devices with no
    # mesh in context take flip, which XLA partitions; with a mesh (any size) the kernels, per device.
    per_device.cuda_gpu = lambda: True
    auto = {"no_mesh": ops.resolve_form("auto")}
    for n in (1, 8):
        with jax.set_mesh(meshlib.make_mesh(jax.devices()[:n])):
            auto[f"mesh{n}"] = ops.resolve_form("auto")
    graphdef = nnx.split(nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0))))[0]
    mesh = meshlib.make_mesh()
    state, shardings = sharded_init(build, mesh, False)
    bs = meshlib.batch_sharding(mesh)
    batch = {"tokens": meshlib.global_batch(tokens, bs, tokens.shape)}
    auto["step_jaxpr"] = str(make_train_step(lm_loss_fn(graphdef), optimizer, shardings, bs).trace(state, batch).jaxpr)
    results["auto"] = auto
    print(json.dumps(results))
""")


def test_sharded_pallas_step_on_8_devices():
    # One test, not several sharing a fixture: under pytest-xdist each worker would run the subprocess.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    eight_devices = json.loads(proc.stdout.strip().splitlines()[-1])

    # The same loss and parameters as flip on one device: data parallel and FSDP, flip and the kernels.
    one = eight_devices["one_flip"]
    for name in ("dp8_flip", "dp8_pallas", "fsdp8_pallas"):
        # tests/test_model.py's tolerances between the forms: the kernels sum in another order.
        np.testing.assert_allclose(eight_devices[name]["loss"], one["loss"], rtol=1e-5, err_msg=name)
        for got, want in zip(eight_devices[name]["updates"], one["updates"], strict=True):
            scale = float(np.abs(want).max())
            assert scale > 0  # every parameter moved
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale, err_msg=name)
    assert 6.0 < one["loss"] < 8.0  # about ln(1024): a real step of an untrained model

    # No activation gathered.
    dp = eight_devices["dp8_pallas"]
    # Data parallel: replicated weights, so nothing at all is gathered (gradients are all-reduced)...
    assert dp["gathers"] == []
    # ...while the same step traced with no mesh in context gathers the kernels' operands (activations).
    assert not set(dp["gathers_without_mesh"]) <= set(eight_devices["param_shapes"]), dp["gathers_without_mesh"]
    # FSDP gathers weights right before their use, and only weights, besides XLA's own partitioned lookup in
    # the row-sharded embedding table, which gathers the token ids and the rows it looked up ([B, T, C]).
    fsdp = eight_devices["fsdp8_pallas"]
    lookup = {"s32[16,32,1]", "f32[16,32,64]"}
    assert fsdp["gathers"] and set(fsdp["gathers"]) <= set(eight_devices["param_shapes"]) | lookup, fsdp["gathers"]
    # The kernels run inside a shard_map (2 q/k calls + 1 gradient per layer, 2 cross-entropy passes).
    assert fsdp["jaxpr"].count("pallas_call") >= 5 and "shard_map" in fsdp["jaxpr"]

    # The form "auto" takes the kernels only where they run per device.
    auto = eight_devices["auto"]
    assert (auto["no_mesh"], auto["mesh1"], auto["mesh8"]) == ("flip", "pallas", "pallas")
    # make_train_step's step traces the default model under its mesh: the kernels, each on its rows.
    assert "pallas_call" in auto["step_jaxpr"] and "shard_map" in auto["step_jaxpr"]


def test_auto_is_the_default_and_is_flip_on_cpu():
    assert ops.resolve_form() == ops.resolve_form("auto") == "flip" and not per_device.cuda_gpu()
    for form in ("flip", "pallas"):
        assert ops.resolve_form(form) == form
    with pytest.raises(ValueError, match="qkv form must be one of auto, flip, pallas, got 'triton'"):
        ops.resolve_form("triton")
    # The same program as flip: "auto" is resolved before anything is traced; the default model's training
    # step on CPU has no kernel in it.
    B, T, N, K, H = 2, 8, 4, 2, 16
    qkv = jax.random.normal(jax.random.key(0), (B, T, (N + 2 * K) * H))
    pos = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    jaxprs = [str(jax.make_jaxpr(jax.grad(lambda x, f=form: sum(a.sum() for a in ops.qkv_heads(x, pos, N, K, H, 1e4, f))))(qkv))
              for form in ("auto", "flip")]
    assert jaxprs[0] == jaxprs[1] and "pallas_call" not in jaxprs[0]
    model = GPT(ModelConfig(depth=1, vocab_size=100, seq_len=16), rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    ids = jnp.zeros((2, 8), jnp.int32)
    step = str(jax.make_jaxpr(jax.grad(lambda p: forward(graphdef, p, ids).sum()))(params))
    assert "pallas_call" not in step and "optimization_barrier" in step  # flip's barrier on dL/dqkv
