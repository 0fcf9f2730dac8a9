"""Resumable training state on disk: an Orbax `CheckpointManager` with two items per step, the train
state (params, optimiser state, step counter; sharded arrays written by every host) and a small JSON
record (the run's config and progress).

Why this is safe to kill at any moment: Orbax writes each step into `<step>.orbax-checkpoint-tmp-*`
and renames it to `<step>` only when every item is complete, so a kill -9 mid-save leaves a temporary
directory that is never listed as a step (and is deleted on the next start).

Integrity: once a step's write has finished, a background thread hashes its files into `<step>/sha256.json`
(nanocode/integrity.py). Restoring checks a step against that manifest before Orbax reads a byte, and the
restored state for NaN/inf after; a step that fails either (a flipped bit, a truncated or missing file) is
reported in one line, moved aside to `<ckpt>_corrupt/` and the next older step is tried. A step without a
manifest (written by an older nanocode, or killed in the moment it was being hashed) is restored unverified
and still checked for NaN/inf. Nothing is loaded silently that did not restore completely.

Divergence: a state holding NaN/inf is never saved, and a stage whose loss becomes non-finite raises
`ckpt.diverged(...)`. That moves the newest step aside (the one step no saved successor vouches for; every
older one was followed by finite training and a finite save) and the rerun resumes from the step before
it, the last good checkpoint, which rotation never deletes: it keeps the newest `keep` steps and always
that one. When a run diverges at the same step again after such a rollback, nothing more is moved: then
the cause is the settings or the data, not a damaged checkpoint.
"""
import json
import shutil
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from nanocode import integrity
from nanocode.checkpoint import quiet_orbax_leftovers
from training.common import StageError

DIVERGED = "diverged.json"  # in the checkpoint directory: the step of the last rollback (see diverged())


class Checkpoints:
    def __init__(self, directory: str | Path, keep: int = 2, async_save: bool = True, log=print):
        self.directory = Path(directory).absolute()
        self.keep, self.log = max(1, keep), log
        # max_to_keep=None: rotation is ours (_rotate), because it must spare the last good step.
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=None, enable_async_checkpointing=async_save,
                                                 cleanup_tmp_directories=True))
        self._sealer: threading.Thread | None = None
        self._seal_error: BaseException | None = None

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, meta: dict, wait: bool = False) -> None:
        """Start writing `state` (a pytree of jax arrays) and `meta` (JSON) as checkpoint `step`. Returns
        once the arrays are copied off the accelerator; the write and its hashing continue in the background."""
        self._finish_sealing()
        if not all_finite(state):
            raise self.diverged(step, f"the state to save as step {step} holds NaN or infinite values")
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        self._sealer = threading.Thread(target=self._seal, args=(step,), name=f"nanocode-seal-{step}", daemon=True)
        self._sealer.start()
        if wait:
            self._finish_sealing()

    def _seal(self, step: int) -> None:
        try:
            self.manager.wait_until_finished()
            if jax.process_index() == 0 and (self.directory / str(step)).is_dir():
                integrity.write_manifest(self.directory / str(step))
        except BaseException as e:  # noqa: BLE001 - raised in the training thread by _finish_sealing
            self._seal_error = e

    def _finish_sealing(self) -> None:
        """Wait for the save in flight and its manifest; then rotate. Re-raises a failed write."""
        if self._sealer is None:
            return
        self._sealer.join()
        self._sealer = None
        if self._seal_error is not None:
            error, self._seal_error = self._seal_error, None
            raise error
        self._rotate()

    def _rotate(self) -> None:
        steps = self.steps()
        spared = set(steps[-self.keep:]) | set(steps[-2:])  # the newest `keep`, and the last good one
        for step in steps:
            if step not in spared:
                self.manager.delete(step)

    def restore_latest(self, abstract_state):
        """(step, state, meta) of the newest checkpoint that restores completely, or None when there is none.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings: arrays come back placed and
        sharded for this run's mesh (which may differ from the one that wrote them)."""
        quiet_orbax_leftovers()
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                verified = integrity.verify(self.directory / str(step))
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                state, meta = restored["state"], restored["meta"]
                if int(jax.device_get(state["step"])) != step or meta.get("step") != step:
                    raise ValueError(f"it records step {int(jax.device_get(state['step']))} / {meta.get('step')}")
                if not all_finite(state):
                    raise ValueError("it holds NaN or infinite values")
            except Exception as e:  # noqa: BLE001 - any failure means this step is unusable; say why, go older
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                moved = self._quarantine(step)
                self.log(f"checkpoint step {step} in {self.directory} is unusable ({reason}); "
                         f"moved it to {moved} and trying an older one")
                continue
            if not verified:
                self.log(f"checkpoint step {step} has no {integrity.MANIFEST} (saved by an older nanocode, or "
                         "killed while it was being hashed): restored it unverified")
            return step, state, meta
        return None

    def diverged(self, step: int, what: str, advice: str = "lower the learning rates") -> StageError:
        """The error a stage raises when training stops being finite at `step` (`what` says how). Moves the
        newest checkpoint aside, unless this very step diverged before, right after such a rollback."""
        try:
            self._finish_sealing()
        except Exception:  # noqa: BLE001 - a write that failed meanwhile: that step is left to restore's checks
            pass
        steps, record = self.steps(), self.directory / DIVERGED
        try:
            again = json.loads(record.read_text()).get("step") == step
        except (OSError, ValueError, AttributeError):
            again = False
        if again or not steps:
            cause = ("it did at this step before, and rolling back did not help: the cause is the settings or the "
                     "data, not a damaged checkpoint" if again else "there is no checkpoint to roll back to")
            return StageError(f"{what}; {cause}. {advice[0].upper() + advice[1:]}, with a new --out (the changed "
                              "settings start a new run)")
        moved = self._quarantine(steps[-1])
        good = steps[-2] if len(steps) > 1 else None
        if jax.process_index() == 0:
            record.write_text(json.dumps({"step": step, "moved": str(moved), "resume_from": good}) + "\n")
        return StageError(f"{what}; moved the newest checkpoint (step {steps[-1]}) to {moved}. Rerun the same "
                          f"command to resume from {f'step {good}, the last good checkpoint' if good else 'the start'}"
                          f"; if it diverges at step {step} again, {advice}")

    def _quarantine(self, step: int) -> Path:
        target = self.directory.parent / f"{self.directory.name}_corrupt" / f"{step}-{int(time.time())}"
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.directory / str(step)), str(target))
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(f"nanocode_quarantine_{step}")
        self.manager.reload()
        return target

    def wait(self) -> None:
        self.manager.wait_until_finished()
        self._finish_sealing()

    def close(self) -> None:
        self.wait()
        self.manager.close()


@jax.jit
def _all_finite(leaves):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def all_finite(tree) -> bool:
    """No NaN or inf in any floating-point array of `tree` (one jitted reduction; sharded arrays welcome)."""
    leaves = [x for x in jax.tree.leaves(tree) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
    return not leaves or bool(jax.device_get(_all_finite(leaves)))
