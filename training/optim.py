"""The optimiser: Muon for the transformer's weight matrices, AdamW for the embedding, the head and any
scalars (nanochat's split), one learning-rate schedule for all of them.

Muon orthogonalises each matrix's momentum with a few Newton-Schulz iterations (Keller Jordan,
modded-nanogpt); it trains the hidden matrices much faster per step than AdamW, but is meant for 2D
weights only, so the embedding (a lookup table), the head (a classifier) and vectors keep AdamW.
"""
import itertools
import math

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon

from nanocode import runtime
from training.config import TrainConfig


def lr_multiplier(step, num_steps: int, warmup_ratio: float, warmdown_ratio: float, final_lr_frac: float):
    """Linear warmup over the first warmup_ratio of the steps, constant, then a linear warmdown to
    final_lr_frac over the last warmdown_ratio (nanochat's trapezoid; works on traced steps)."""
    warmup = round(warmup_ratio * num_steps)
    warmdown = round(warmdown_ratio * num_steps)
    step = jnp.asarray(step, jnp.float32)
    up = (step + 1) / max(warmup, 1)
    down = (num_steps - step) / max(warmdown, 1)
    down = down + (1 - down) * final_lr_frac
    mult = jnp.where(step < warmup, up, jnp.where(step >= num_steps - warmdown, down, 1.0))
    return jnp.clip(mult, final_lr_frac if warmdown else 0.0, 1.0)


def param_labels(params) -> dict:
    """'embed' for the token table, 'head' for the unembedding, 'matrix' for every >= 2D weight inside
    the blocks, 'scalar' for the rest (norm gains, biases, mixing scalars, should a model have them)."""
    def label(path, leaf):
        top = path[0].key if hasattr(path[0], "key") else str(path[0])
        if top == "wte":
            return "embed"
        if top == "lm_head":
            return "head"
        return "matrix" if leaf.ndim >= 2 else "scalar"
    return jax.tree_util.tree_map_with_path(label, params)


def _muon_dims(matrices):
    """Muon's view of each matrix: the last two axes are (fan_in, fan_out), any leading axis (stacked
    layers) is a batch of independent matrices."""
    return jax.tree.map(lambda x: MuonDimensionNumbers(reduction_axis=x.ndim - 2, output_axis=x.ndim - 1),
                        matrices)


def muon_view(inner: optax.GradientTransformation, fused: dict[str, list[int]], stack: bool
              ) -> optax.GradientTransformation:
    """Run `inner` on Muon's view of the weight matrices, then map its updates back.

    - Fused matrices are split into their logical parts: the model keeps q, k and v in one `c_qkv`
      [C, (N+2K)*H] (one matmul), but Muon orthogonalises each projection on its own, as it would three
      separate weights (`fused`: parameter name -> column sizes of its parts).
    - With `stack`, same-shaped parts are stacked into one [n, in, out] array: a depth-12 model's 72 parts
      have 3 shapes, so Newton-Schulz runs as 3 batched GEMM chains instead of 72 small ones (H200, depth
      12: 146 ms per step against 154 ms unstacked, 2026-11-22, training/LOG.md). The inner state is kept in
      this view."""
    def group(tree):
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
        parts, counts = [], []
        for path, leaf in leaves:
            sizes = fused.get(getattr(path[-1], "key", None))
            pieces = jnp.split(leaf, list(itertools.accumulate(sizes[:-1])), axis=-1) if sizes else [leaf]
            parts.extend(pieces)
            counts.append(len(pieces))
        if not stack:
            return {f"{i:05d}": p for i, p in enumerate(parts)}, (treedef, counts, None)
        by_shape: dict[tuple, list[int]] = {}
        for i, part in enumerate(parts):
            by_shape.setdefault(tuple(part.shape), []).append(i)
        grouped = {"x".join(map(str, shape)): jnp.stack([parts[i] for i in idx]) for shape, idx in by_shape.items()}
        return grouped, (treedef, counts, by_shape)

    def ungroup(grouped, layout):
        treedef, counts, by_shape = layout
        if by_shape is None:
            parts = [grouped[f"{i:05d}"] for i in range(sum(counts))]
        else:
            parts = [None] * sum(counts)
            for shape, idx in by_shape.items():
                for j, i in enumerate(idx):
                    parts[i] = grouped["x".join(map(str, shape))][j]
        leaves, k = [], 0
        for n in counts:
            leaves.append(parts[k] if n == 1 else jnp.concatenate(parts[k:k + n], axis=-1))
            k += n
        return jax.tree.unflatten(treedef, leaves)

    def init_fn(params):
        return inner.init(group(params)[0])

    def update_fn(updates, state, params=None):
        grouped, layout = group(updates)
        new, state = inner.update(grouped, state, None if params is None else group(params)[0])
        return ungroup(new, layout), state

    return optax.GradientTransformation(init_fn, update_fn)


def muon_momentum(step, start: float, end: float = 0.95, warmup_steps: int = 300):
    frac = jnp.minimum(jnp.asarray(step, jnp.float32) / warmup_steps, 1.0)
    return (1 - frac) * start + frac * end


def make_optimizer(cfg: TrainConfig, num_steps: int) -> optax.GradientTransformation:
    """Muon (optax.contrib) on the matrices, AdamW on the rest; every group's learning rate follows the
    same warmup/constant/warmdown multiplier."""
    def schedule(base_lr):
        return lambda count: base_lr * lr_multiplier(count, num_steps, cfg.warmup_ratio, cfg.warmdown_ratio,
                                                     cfg.final_lr_frac)

    def adamw(base_lr):
        # eps 1e-10 and betas (0.8, 0.95) as nanochat: the embedding sees sparse, spiky gradients.
        return optax.adamw(schedule(base_lr), b1=cfg.adam_b1, b2=cfg.adam_b2, eps=1e-10,
                           weight_decay=cfg.weight_decay)

    # Muon's momentum warms up from 0.85 to 0.95 over 300 steps (nanochat): early gradients change fast.
    # muon_dtype bfloat16 keeps the momentum and runs Newton-Schulz in bf16, as nanochat does (the
    # iteration only needs the singular vectors roughly; bf16 matmuls are ~15x faster than fp32 on GPU).
    muon_dtype = cfg.muon_dtype if cfg.muon_dtype != "auto" else jnp.dtype(runtime.compute_dtype()).name
    low = jnp.bfloat16 if muon_dtype == "bfloat16" else None
    # The momentum hyperparameter is stored in the same dtype: an fp32 beta would promote the bf16
    # momentum back to fp32 and Newton-Schulz would run as fp32 (TF32) GEMMs (seen in the H200 profile).
    # ns_steps must be static: as an injected hyperparameter it is a traced value, optax's Newton-Schulz
    # fori_loop cannot unroll, and XLA runs a while loop whose every iteration copies its condition to the
    # host (H200, depth 12: 18 host round trips per step, and the GPU idled 1.4 ms before each step;
    # 2026-11-22, training/LOG.md).
    muon_core = optax.inject_hyperparams(scale_by_muon, static_args=("weight_dimension_numbers", "mu_dtype", "ns_steps"),
                                         hyperparam_dtype=low)(
        beta=lambda count: muon_momentum(count, cfg.muon_momentum_start).astype(low or jnp.float32),
        weight_dimension_numbers=_muon_dims, mu_dtype=low)

    def cast(dtype):
        return optax.stateless(lambda updates, params=None: jax.tree.map(lambda u: u.astype(dtype), updates))

    core = optax.chain(
        *([cast(low), muon_core, cast(jnp.float32)] if low else [muon_core]),
        # Keller Jordan's shape scaling sqrt(max(1, fan_out/fan_in)): the MLP's up-projection gets 2x.
        optax.stateless(lambda updates, params=None: jax.tree.map(
            lambda u: u * math.sqrt(max(1.0, u.shape[-1] / u.shape[-2])), updates)),
    )
    m = cfg.model_config(vocab_size=1)  # only the attention shapes matter here
    fused = {"c_qkv": [m.n_head * m.head_dim_, m.n_kv_head * m.head_dim_, m.n_kv_head * m.head_dim_]}
    muon = optax.chain(
        muon_view(core, fused, stack=cfg.muon_stack),
        optax.add_decayed_weights(cfg.weight_decay) if cfg.weight_decay else optax.identity(),
        optax.scale_by_learning_rate(schedule(cfg.matrix_lr)),
    )
    scale = cfg.adam_lr_scale()
    return optax.partition({
        "matrix": muon,
        "embed": adamw(cfg.embedding_lr * scale),
        "head": adamw(cfg.unembedding_lr * scale),
        # Vectors and scalars (none in today's GPT): AdamW at the embedding's rate, the other 'table-like'
        # parameters whose gradients are sparse and small.
        "scalar": adamw(cfg.embedding_lr * scale),
    }, param_labels)
