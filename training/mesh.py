"""Devices, hosts and shardings: one `jax.sharding.Mesh` axis, "data", over every device of every host.

- Data parallel: each batch is split along its batch axis over "data"; parameters are replicated and XLA
  all-reduces the gradients.
- FSDP (`fsdp=True`): each parameter and optimiser-state array is also split over "data" along its largest
  evenly divisible axis; XLA all-gathers a weight right before it is used and reduce-scatters its
  gradient (ZeRO-3), so a model only needs 1/n of its state per device.
- Hosts: `init_distributed` joins the processes through `jax.distributed`; each process loads only its
  own rows of the global batch (`global_batch`).
"""
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
    """Join a multi-host run when one is configured: the flags, or $JAX_COORDINATOR_ADDRESS with
    $JAX_NUM_PROCESSES and $JAX_PROCESS_ID, or a cluster JAX detects itself (SLURM, Open MPI).
    Returns whether jax.distributed was initialised. Must run before anything touches a device."""
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if coordinator:
        if num_processes is None or process_id is None:
            raise ValueError(f"multi-host run with coordinator {coordinator} needs the number of processes and "
                             "this process's id: pass --num-processes and --process-id (or set "
                             "JAX_NUM_PROCESSES and JAX_PROCESS_ID)")
        jax.distributed.initialize(coordinator, num_processes, process_id)
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        jax.distributed.initialize()  # JAX reads the cluster's own variables
        return True
    return False


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (DATA,))


def _fsdp_spec(shape, n: int) -> P:
    """Shard the largest axis that n divides (ties: the first); replicate what nothing fits."""
    best = None
    for axis, size in enumerate(shape):
        if size % n == 0 and size >= n and (best is None or size > shape[best]):
            best = axis
    if best is None:
        return P()
    return P(*([None] * best + [DATA]))


def state_shardings(mesh: Mesh, abstract_state, fsdp: bool):
    """NamedShardings for a pytree of arrays (params, optimiser state, step counter)."""
    n = mesh.shape[DATA]

    def one(x):
        spec = _fsdp_spec(x.shape, n) if fsdp and n > 1 and x.ndim >= 1 else P()
        return NamedSharding(mesh, spec)
    return jax.tree.map(one, abstract_state)


def batch_sharding(mesh: Mesh, ndim: int = 3, batch_axis: int = 1) -> NamedSharding:
    """A [grad_accum, B, T] batch split along B."""
    spec = [None] * ndim
    spec[batch_axis] = DATA
    return NamedSharding(mesh, P(*spec))


def local_rows(global_rows: int) -> tuple[int, int]:
    """(first row, number of rows) of the global batch this process loads: processes own equal,
    contiguous slices, in the order of their devices in the mesh."""
    count, index = jax.process_count(), jax.process_index()
    if global_rows % count:
        raise ValueError(f"a global batch of {global_rows} rows does not split over {count} processes")
    per = global_rows // count
    return index * per, per


def global_batch(local: np.ndarray, sharding: NamedSharding, global_shape: tuple[int, ...]):
    """One global jax.Array from each process's own rows (no host sends another host data)."""
    return jax.make_array_from_process_local_data(sharding, local, global_shape)
