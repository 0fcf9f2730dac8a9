"""What every training stage shares: the device's peak for MFU, ..."""
import functools
import time

# Dense bf16 tensor-core peaks (no sparsity), by device_kind substring, FLOP/s.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12,
             "L4": 121e12, "A10G": 70e12, "RTX 4090": 165e12, "B200": 2250e12}


@functools.cache
def device_peak_flops(device) -> tuple[float, str]:
    """(peak FLOP/s, what it is) for MFU. CPUs have no published bf16 figure that XLA reaches, so there
    the reference is a measured fp32 matmul: MFU then says how close the step gets to this machine's
    best dense matmul."""
    import jax
    import jax.numpy as jnp
    kind = device.device_kind
    for name, peak in PEAK_BF16.items():
        if name in kind:
            return peak, f"{kind} dense bf16 peak"
    if device.platform == "cpu":
        n = 1024
        a = jnp.ones((n, n), jnp.float32)
        f = jax.jit(lambda a: a @ a)
        f(a).block_until_ready()
        best = 0.0
        for _ in range(5):  # the best of five: other processes on the machine only ever slow it down
            t = time.perf_counter()
            f(a).block_until_ready()
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
        return best, "measured fp32 1024^3 matmul on this CPU"
    return float("nan"), f"{kind}: unknown peak"
