"""Our custom GPU kernels (Pallas): how they compile here, and how they run under sharded jits.

On NVIDIA GPUs they compile through Triton; on CPU (the tests) Pallas interprets them.

XLA has no partitioning rule for a custom kernel: in a jit whose arrays are split over several devices
(data parallel, FSDP) it would gather the kernel's operands to every device and run the whole kernel on
each. The kernels we have (nanocode/rope_pallas.py, training/ce_pallas.py) compute every output row from
the same input row, so under a mesh they run inside a shard_map over the batch axis instead: every device
on its own rows, no communication. The mesh comes from JAX's context (jax.set_mesh), which
training/train_step.make_train_step sets around its step.
"""
import jax
from jax.sharding import PartitionSpec as P

from nanocode import runtime


def cuda_gpu() -> bool:
    """Whether JAX runs on NVIDIA GPUs (Pallas's Triton backend), not ROCm or a CPU."""
    return runtime.backend() == "gpu" and "cuda" in jax.devices()[0].client.platform_version.lower()


def interpreted() -> bool:
    """Whether Pallas kernels run in Pallas's interpreter here (CPU) rather than compiled."""
    return jax.default_backend() == "cpu"


def pallas_options(num_warps: int) -> dict:
    """pallas_call's keyword arguments for one kernel: the interpreter on CPU, else Triton with this many
    warps (one stage: the kernels are single passes, with no loop to pipeline)."""
    if interpreted():
        return dict(interpret=True)
    from jax.experimental.pallas import triton as pl_triton
    return dict(compiler_params=pl_triton.CompilerParams(num_warps=num_warps, num_stages=1))


def context_mesh():
    """The mesh JAX is tracing under (jax.set_mesh), or None."""
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh.empty else mesh


def kernels_usable() -> bool:
    """Whether a custom kernel traced now runs on each device's own rows: one device, or a mesh in
    context. Several devices and no mesh: XLA would gather the operands (the values stay right)."""
    return jax.device_count() == 1 or context_mesh() is not None


def per_device_rows(kernel, *arrays):
    """kernel(*arrays), every array (and output) with the batch as its leading axis, B or B*T rows B-major.
    Under a mesh of more than one device: a shard_map that splits that axis over all the mesh's axes (the
    batch's sharding: training/mesh.batch_sharding), so each device runs the kernel on its own rows. A batch
    the mesh does not divide (never a training batch) runs unsplit, as without a mesh."""
    mesh = context_mesh()
    if mesh is None or mesh.size == 1 or any(a.shape[0] % mesh.size for a in arrays):
        return kernel(*arrays)
    rows = P(mesh.axis_names)
    # check_vma off: the body has no collectives to check, and with it on pallas_call's out_shape would
    # have to say how it varies over the mesh (an argument whose name has changed between JAX versions).
    return jax.shard_map(kernel, mesh=mesh, in_specs=rows, out_specs=rows, check_vma=False)(*arrays)
