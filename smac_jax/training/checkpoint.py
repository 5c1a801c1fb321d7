"""Orbax checkpoints of whole training states (learner states, replay buffers, counters)."""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tree does not match the state this run builds (another config, or a
    checkpoint written by another version of the library)."""


class Checkpointer:
    """One orbax ``CheckpointManager`` per phase (``offline``, ``online``) under ``directory``."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self.max_to_keep = max_to_keep
        self._managers: dict[str, ocp.CheckpointManager] = {}

    def _manager(self, phase: str) -> ocp.CheckpointManager:
        if phase not in self._managers:
            self._managers[phase] = ocp.CheckpointManager(
                os.path.join(self.directory, phase),
                options=ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep, create=True),
            )
        return self._managers[phase]

    def save(self, phase: str, step: int, tree: Any, meta: dict | None = None) -> None:
        mgr = self._manager(phase)
        mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta or {})), force=True)
        mgr.wait_until_finished()

    def latest_step(self, phase: str) -> int | None:
        if not os.path.isdir(os.path.join(self.directory, phase)):
            return None
        return self._manager(phase).latest_step()

    def restore(self, phase: str, template: Any, step: int | None = None) -> tuple[Any, dict]:
        mgr = self._manager(phase)
        step = mgr.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        try:
            out = mgr.restore(step, args=args)
        except ValueError as e:  # orbax: tree structure or shapes differ
            detail = str(e).splitlines()[0][:300]
            raise CheckpointMismatchError(
                f"the {phase} checkpoint at step {step} in {os.path.join(self.directory, phase)} does not match "
                f"the state this run builds (a different config, e.g. seeds, networks or replay capacity, or a "
                f"checkpoint from another smac_jax version). "
                f"Resume with the config that wrote it, or start a fresh --workdir. orbax said: {detail}") from None
        return out["state"], dict(out["meta"])

    def close(self) -> None:
        for m in self._managers.values():
            m.close()
