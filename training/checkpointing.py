"""Resumable training state on disk: an Orbax `CheckpointManager` with two items per step, the train
state (params, optimiser state, step counter; sharded arrays written by every host) and a small JSON
record (the run's config and progress).

Why this is safe to kill at any moment: Orbax writes each step into `<step>.orbax-checkpoint-tmp-*`
and renames it to `<step>` only when every item is complete, so a kill -9 mid-save leaves a temporary
directory that is never listed as a step (and is deleted on the next start). A finished step that was
damaged afterwards (a truncated or missing file) fails its checksum or metadata read on restore; it is
then reported, moved aside to `<ckpt>_corrupt/` and the next older step is tried. Nothing is loaded
silently that did not restore completely.
"""
import shutil
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, directory: str | Path, keep: int = 2, async_save: bool = True, log=print):
        self.directory = Path(directory).absolute()
        self.log = log
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                                 cleanup_tmp_directories=True))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, meta: dict, wait: bool = False) -> None:
        """Start writing `state` (a pytree of jax arrays) and `meta` (JSON) as checkpoint `step`. Returns
        once the arrays are copied off the accelerator; the write itself continues in the background."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        if wait:
            self.manager.wait_until_finished()

    def restore_latest(self, abstract_state):
        """(step, state, meta) of the newest checkpoint that restores completely, or None when there is none.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings: arrays come back placed and
        sharded for this run's mesh (which may differ from the one that wrote them)."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                state, meta = restored["state"], restored["meta"]
                if int(jax.device_get(state["step"])) != step or meta.get("step") != step:
                    raise ValueError(f"it records step {int(jax.device_get(state['step']))} / {meta.get('step')}")
            except Exception as e:  # noqa: BLE001 - any failure means this step is unusable; say why, go older
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                moved = self._quarantine(step)
                self.log(f"checkpoint step {step} in {self.directory} is unusable ({reason}); "
                         f"moved it to {moved} and trying an older one")
                continue
            return step, state, meta
        return None

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

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
