"""Orbax checkpoints: train state, data-iterator position and a fingerprint of the run.

A checkpoint holds three items: `state` (the TrainState, restored directly into its
shardings), `data` (the input iterator's position, JSON) and `meta` (what the run is:
model, dataset, SMH layout). Orbax writes each step to a temporary directory and renames
it when complete, so a save interrupted by a kill is never listed, never restored.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

from smh_jax.errors import UserError

# Orbax saves step N into N<TMP_DIR_SUFFIX> and renames it to N once complete.
TMP_DIR_SUFFIX = ".orbax-checkpoint-tmp"


# Scalar fields that say what a thing is; a mismatch there is named before its
# consequences (a product pool against a Kronecker one, rather than their sizes).
_IDENTITY_KEYS = ("name", "pool", "kind", "source")


def _identity_first(key: str, saved: dict, current: dict) -> tuple[bool, str]:
    value = saved.get(key, current.get(key))
    return (key not in _IDENTITY_KEYS or isinstance(value, (dict, list)), key)


def _describe_mismatch(saved: Any, current: Any, prefix: str = "") -> Optional[str]:
    """The first differing field between two fingerprints, as 'key: saved vs current'."""
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = sorted(set(saved) | set(current),
                      key=lambda k: _identity_first(k, saved, current))
        for key in keys:
            found = _describe_mismatch(saved.get(key), current.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(current, list) and saved != current:
        if len(saved) != len(current):
            return (f"{prefix.rstrip('.')}: checkpoint has {len(saved)} entries, this config "
                    f"has {len(current)}")
        for i, (a, b) in enumerate(zip(saved, current, strict=True)):
            found = _describe_mismatch(a, b, f"{prefix.rstrip('.')}[{i}].")
            if found:
                return found
    if saved != current:
        dense_vs_smh = prefix == "smh." and (saved is None) != (current is None)
        text_saved, text_current = repr(saved), repr(current)
        if len(text_saved) > 80 or len(text_current) > 80:
            text_saved, text_current = "(differs)", "(this config)"
            if dense_vs_smh:
                text_saved, text_current = (repr(v) if v is None else "an SMH layout"
                                            for v in (saved, current))
        note = ""
        if dense_vs_smh:
            kinds = ("dense (uncompressed)", "SMH-compressed")
            note = (f" (the checkpoint is {kinds[saved is not None]}, this config is "
                    f"{kinds[current is not None]})")
        return (f"{prefix.rstrip('.')}: checkpoint has {text_saved}, this config has "
                f"{text_current}{note}")
    return None


class Checkpointer:
    """A thin, explicit wrapper over `ocp.CheckpointManager` for one workdir."""

    def __init__(self, directory: str, *, max_to_keep: int, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True,
                enable_async_checkpointing=async_save))

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        """Saves `step` (asynchronously if so configured); a step already saved is kept.

        The second request for a step comes from a SIGTERM that arrives at a periodic
        checkpoint: the state is the same, and Orbax would refuse the duplicate.
        """
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)), force=True)

    def read_meta(self, step: int) -> dict:
        return dict(self._manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore())).meta)

    def check_compatible(self, step: int, meta: dict) -> None:
        """Refuses (UserError) a checkpoint written for another model, dataset or layout."""
        mismatch = _describe_mismatch(self.read_meta(step), meta)
        if mismatch:
            raise UserError(f"checkpoint step {step} in {self.directory} was written by a "
                            f"different run ({mismatch}); use another --workdir")

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """(state, data_state) of `step`; abstract_state carries the target shardings."""
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        return restored.state, dict(restored.data)

    def reached_preemption(self, step: int) -> bool:
        """True on every process once a preemption notice was agreed on (multi-process)."""
        return self._manager.reached_preemption(step)

    def discard_interrupted_saves(self) -> list[str]:
        """Removes the temporary directories of saves a kill interrupted; returns their names.

        Orbax never lists them (a step counts once its directory is renamed into place), so
        this only frees the disk; call it once the workdir is known to belong to this run.
        """
        removed = []
        for name in sorted(os.listdir(self.directory)):
            if TMP_DIR_SUFFIX in name:
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
                removed.append(name)
        if removed:
            logging.warning("removed interrupted checkpoint saves in %s: %s", self.directory,
                            ", ".join(removed))
        return removed

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)
