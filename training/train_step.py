"""One compiled optimiser step, shared by pretraining, SFT and DPO.

The step is a pure function of (state, batch) jitted once, with the state donated (its buffers are reused
for the new state, so parameters and optimiser moments exist once in memory) and explicit shardings over
the mesh. It works on plain pytrees from `nnx.split`, not on nnx modules: `nnx.jit` walks the module graph
in Python on every call, which costs real time on small models (flax's performance guide).

The step traces, compiles and runs with its mesh as JAX's context mesh (`jax.set_mesh`, `UnderMesh`): with
every mesh axis Auto that changes no sharding, and it is how code inside the model learns the mesh, which
custom kernels need (nanocode/per_device.py runs the Pallas kernels on each device's own rows in a
shard_map over it; without it XLA would gather their operands to every device).

A loss function returns *sums* (summed per-token loss, number of counted tokens) rather than a mean, so
gradient accumulation and masks (SFT trains only on assistant tokens) weigh every token equally however
the tokens fall into micro-batches and devices.
"""
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from training.losses import token_losses
from training.mesh import state_shardings

LossFn = Callable[..., tuple[jax.Array, jax.Array]]  # (params, micro_batch) -> (loss_sum, weight_sum)


def init_state(params, optimizer: optax.GradientTransformation) -> dict:
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt": optimizer.init(params)}


def abstract_state(init_fn, mesh, fsdp: bool, *args):
    """(abstract state with shardings, shardings) of `init_fn(*args) -> state`, without computing it: what
    a checkpoint restore needs to place every array directly where it belongs."""
    abstract = jax.eval_shape(init_fn, *args)
    shardings = state_shardings(mesh, abstract, fsdp)
    placed = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    return placed, shardings


def sharded_init(init_fn, mesh, fsdp: bool, *args):
    """Run `init_fn(*args) -> state` so that every array is born with its sharding (an FSDP model never
    exists whole on one device). Returns (state, shardings)."""
    _, shardings = abstract_state(init_fn, mesh, fsdp, *args)
    return jax.jit(init_fn, out_shardings=shardings)(*args), shardings


def lm_loss_fn(graphdef, remat: str = "none", ce_impl: str = "auto") -> LossFn:
    """Next-token loss on a micro-batch {"tokens": int32[B, T+1], optional "mask": [B, T]}: the mask
    (1 = train on this target) is what SFT uses; pretraining counts every token. ce_impl: losses.CE_IMPLS."""
    def loss_fn(params, batch):
        tokens_BxT1 = batch["tokens"]
        nll_BxT = token_losses(nnx.merge(graphdef, params), tokens_BxT1[:, :-1], tokens_BxT1[:, 1:], remat,
                               ce_impl)
        mask_BxT = batch.get("mask")
        if mask_BxT is None:
            return nll_BxT.sum(), jnp.float32(nll_BxT.size)
        mask_BxT = mask_BxT.astype(jnp.float32)
        return (nll_BxT * mask_BxT).sum(), mask_BxT.sum()
    return loss_fn


class UnderMesh:
    """`jitted` (a jax.jit function) traced, lowered and called with `mesh` as JAX's context mesh
    (jax.set_mesh), so that the traced code can read it (jax.sharding.get_abstract_mesh). For any jit that
    runs the model's training forward on sharded arrays: make_train_step's step, a DPO step, a sharded
    evaluation. jax.set_mesh cannot be entered inside a jit, so it wraps the calls."""

    def __init__(self, jitted, mesh: Mesh):
        self.jitted, self.mesh = jitted, mesh

    def __call__(self, *args, **kwargs):
        with jax.set_mesh(self.mesh):
            return self.jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with jax.set_mesh(self.mesh):
            return self.jitted.lower(*args, **kwargs)

    def trace(self, *args, **kwargs):
        with jax.set_mesh(self.mesh):
            return self.jitted.trace(*args, **kwargs)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, state_sharding=None,
                    batch_sharding=None, donate: bool = True):
    """A jitted `step(state, batch) -> (state, metrics)`.

    `batch` is a pytree whose leaves carry a leading gradient-accumulation axis [A, B, ...]: the A
    micro-batches run one after another (a `lax.scan`, so the program does not grow with A) and their
    gradient sums are added before the single optimiser update. metrics: mean loss over the counted
    tokens, the number of tokens, and the global gradient norm. With shardings, the mesh of
    `state_sharding` is the context mesh of every trace and call (UnderMesh).
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, batch):
        params = state["params"]
        accum = jax.tree.leaves(batch)[0].shape[0]
        if accum == 1:
            (loss_sum, weight), grads = grad_fn(params, jax.tree.map(lambda x: x[0], batch))
        else:
            def micro(carry, micro_batch):
                grads_acc, loss_acc, weight_acc = carry
                (loss_sum, weight), grads = grad_fn(params, micro_batch)
                return (jax.tree.map(jnp.add, grads_acc, grads), loss_acc + loss_sum, weight_acc + weight), None
            zeros = jax.tree.map(jnp.zeros_like, params)
            (grads, loss_sum, weight), _ = jax.lax.scan(micro, (zeros, jnp.float32(0), jnp.float32(0)), batch)
        weight = jnp.maximum(weight, 1.0)  # an all-masked batch must not divide by zero
        grads = jax.tree.map(lambda g: g / weight, grads)
        updates, opt_state = optimizer.update(grads, state["opt"], params)
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates), "opt": opt_state}
        metrics = {"loss": loss_sum / weight, "tokens": weight, "grad_norm": optax.global_norm(grads)}
        return new_state, metrics

    donate_argnums = (0,) if donate else ()
    if state_sharding is None:
        return jax.jit(step, donate_argnums=donate_argnums)
    jitted = jax.jit(step, donate_argnums=donate_argnums, in_shardings=(state_sharding, batch_sharding),
                     out_shardings=(state_sharding, None))
    return UnderMesh(jitted, jax.tree.leaves(state_sharding)[0].mesh)
