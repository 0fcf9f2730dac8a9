"""Pretraining configuration: one dataclass, three presets, and the hyperparameters derived from `--depth`.

nanochat's recipe, made explicit: the depth sets the model (width 64*depth), the number of optimiser steps
(Chinchilla's ~20 training tokens per parameter, unless a preset fixes a budget), and the AdamW learning
rates (scaled by 1/sqrt(width/768), nanochat's muP-like rule; Muon's update is already width-independent).
Imports no JAX at module import (the stages' --help stays instant); the methods that need it import it.
"""
import math
from dataclasses import asdict, dataclass, fields, replace

from training import common
from training.common import StageError

TrainConfigError = StageError  # the name tests and scripts import; every stage raises the one StageError


@dataclass(frozen=True)
class TrainConfig:
    depth: int = 12
    seq_len: int = 2048
    device_batch: int = 32            # sequences per device in one micro-step (what has to fit in memory)
    total_batch: int = 524_288        # tokens per optimiser step, all devices; accumulation makes up the rest
    tokens_per_param: float = 20.0    # Chinchilla: the step budget when steps is 0
    steps: int = 0                    # optimiser steps; 0: derived from tokens_per_param
    # Optimiser (nanochat's values): Muon for the block matrices, AdamW for the rest.
    matrix_lr: float = 0.02
    embedding_lr: float = 0.2
    unembedding_lr: float = 0.004
    weight_decay: float = 0.0
    adam_b1: float = 0.8
    adam_b2: float = 0.95
    muon_momentum_start: float = 0.85  # warmed up to 0.95 over the first 300 steps (nanochat)
    warmup_ratio: float = 0.0         # fraction of steps with a linear learning-rate warmup
    warmdown_ratio: float = 0.2       # fraction of steps at the end with a linear decay to final_lr_frac
    final_lr_frac: float = 0.0
    # Data.
    fim_rate: float = 0.5             # fraction of documents rearranged into fill-in-the-middle (PSM) form
    seed: int = 0
    # Speed knobs (see bench_train.py for what each buys).
    # Rematerialisation: "none" was fastest on an H200 at depth 12 and 20 (dots -7%, full -13%); "dots" (keep
    # the matmul outputs, recompute the elementwise work) and "full" trade speed for memory.
    remat: str = "none"
    muon_dtype: str = "auto"          # Muon momentum + Newton-Schulz dtype: bfloat16, float32, auto (= compute)
    muon_stack: bool = True           # run Newton-Schulz on same-shaped matrices stacked (batched GEMMs)
    fsdp: bool = False                # shard parameters and optimiser state over the devices too
    # The residual stream's dtype: auto (= the compute dtype: bf16 on GPU, fp32 on CPU), float32 or bfloat16.
    # The parameters stay fp32 masters either way; RMSNorm reduces in fp32 and the logits are fp32. bf16 was
    # -4% per step at depth 12 on an H200 for the same val bpb on real data (2026-11-22, training/LOG.md).
    residual_dtype: str = "auto"
    # The training matmuls' input dtype: auto (= the compute dtype on GPU; on CPU bf16 where the CPU has bf16
    # dot instructions, see runtime.train_matmul_dtype), float32 or bfloat16. Accumulation stays fp32.
    matmul_dtype: str = "auto"
    # Bookkeeping.
    eval_every: int = 250             # steps between validation bits-per-byte measurements (0: only at the end)
    eval_tokens: int = 2_097_152      # validation tokens per split and measurement
    sample_every: int = 1000          # steps between printed samples (0: only at the end)
    save_every: int = 500             # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 2
    log_every: int = 10

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, int) or isinstance(value, bool)):
                raise StageError(f"{f.name} must be an integer, got {value!r}")
        positive = ("depth", "seq_len", "device_batch", "total_batch", "keep_checkpoints", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise StageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "eval_every", "sample_every", "save_every", "eval_tokens"):
            if getattr(self, name) < 0:
                raise StageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.total_batch % (self.device_batch * self.seq_len):
            raise StageError(
                f"--total-batch {self.total_batch} is not a multiple of one micro-batch "
                f"(device batch {self.device_batch} x seq len {self.seq_len} = "
                f"{self.device_batch * self.seq_len} tokens); pick a multiple")
        for name in ("warmup_ratio", "warmdown_ratio", "final_lr_frac", "fim_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise StageError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if self.warmup_ratio + self.warmdown_ratio > 1.0:
            raise StageError("warmup_ratio + warmdown_ratio must not exceed 1")
        for name in ("muon_dtype", "residual_dtype", "matmul_dtype"):
            if getattr(self, name) not in ("auto", "bfloat16", "float32"):
                raise StageError(f"--{name.replace('_', '-')} must be auto, bfloat16 or float32, "
                                 f"got {getattr(self, name)!r}")
        if self.remat not in ("none", "dots", "full"):
            raise StageError(f"--remat must be none, dots or full, got {self.remat!r}")

    # --- derived ---------------------------------------------------------------------------------------

    def model_config(self, vocab_size: int):
        from nanocode.model import ModelConfig
        return ModelConfig(depth=self.depth, vocab_size=vocab_size, seq_len=self.seq_len)

    def residual_jnp_dtype(self):
        """The residual stream's dtype for GPT(residual_dtype=...), with auto resolved on this backend."""
        import jax.numpy as jnp
        from nanocode import runtime
        return jnp.dtype(runtime.compute_dtype() if self.residual_dtype == "auto" else self.residual_dtype)

    def matmul_jnp_dtype(self):
        """The training matmuls' input dtype for GPT(matmul_dtype=...), with auto resolved on this backend."""
        import jax.numpy as jnp
        from nanocode import runtime
        return jnp.dtype(runtime.train_matmul_dtype() if self.matmul_dtype == "auto" else self.matmul_dtype)

    def grad_accum(self, data_parallel: int) -> int:
        """Micro-steps per optimiser step when `data_parallel` devices each take device_batch rows."""
        per_micro = self.device_batch * self.seq_len * data_parallel
        if self.total_batch % per_micro:
            raise StageError(
                f"{data_parallel} devices x device batch {self.device_batch} x seq len {self.seq_len} = "
                f"{per_micro} tokens per micro-step does not divide --total-batch "
                f"{self.total_batch}; change --device-batch or --total-batch")
        return self.total_batch // per_micro

    def total_steps(self, vocab_size: int) -> int:
        if self.steps:
            return self.steps
        params = self.model_config(vocab_size).num_params()
        return max(1, math.ceil(self.tokens_per_param * params / self.total_batch))

    def adam_lr_scale(self) -> float:
        return (64 * self.depth / 768) ** -0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# A preset names a depth, a sequence length and a budget; every other field keeps its default.
PRESETS: dict[str, dict] = {
    # Seconds on a laptop: the test suite's end-to-end run (a 2-layer model, a few dozen steps).
    "test": dict(depth=2, seq_len=64, device_batch=4, total_batch=512, steps=16,
                 eval_every=8, eval_tokens=1024, sample_every=0, save_every=4, log_every=4),
    # About ten minutes on 2 CPU cores with a clearly falling loss; pair it with an 8192-token vocabulary
    # (`nanocode train tokenizer --vocab 8192`): at width 256 a 32768-row head would cost 2.7x the whole
    # transformer. 500 steps took 8.2 min to val bpb code 1.83 (2026-11-22, training/LOG.md).
    "cpu": dict(depth=4, seq_len=512, device_batch=8, total_batch=4096, steps=500,
                warmup_ratio=0.02, eval_every=100, eval_tokens=32_768, sample_every=0, save_every=50,
                log_every=5),
    # One GPU: depth 12, 2048 context, Chinchilla budget (~100 min on an H200, 2026-11-22).
    "gpu": dict(depth=12, seq_len=2048, device_batch=32, total_batch=524_288, tokens_per_param=20.0),
}


def from_preset(name: str, **overrides) -> TrainConfig:
    """A preset with command-line overrides (None means 'not given'). Changing --depth on a preset whose
    budget is a step count keeps the count; on a token-ratio preset the step budget follows the depth."""
    return common.from_preset(PRESETS, TrainConfig, name, "training", **overrides)


def fine_tune_config(depth: int, lr_frac: float, warmdown_ratio: float, remat: str, fsdp: bool,
                     seed: int) -> TrainConfig:
    """The TrainConfig that SFT and DPO hand to make_optimizer: pretraining's Muon + AdamW split and depth
    scaling, the base learning rates times lr_frac, no warmup (the model is trained already), a final linear
    decay to zero. Only optimiser fields are set; batch fields keep their defaults (make_optimizer does not
    read them)."""
    base = TrainConfig()
    return replace(base, depth=depth, matrix_lr=base.matrix_lr * lr_frac, embedding_lr=base.embedding_lr * lr_frac,
                   unembedding_lr=base.unembedding_lr * lr_frac, warmup_ratio=0.0, warmdown_ratio=warmdown_ratio,
                   final_lr_frac=0.0, remat=remat, fsdp=fsdp, seed=seed)
