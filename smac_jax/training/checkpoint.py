"""Orbax checkpoints of whole training states (learner states, replay buffers, counters)."""
from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp


from smac_jax.errors import CheckpointMismatchError  # noqa: F401  (re-exported)


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
        """The checkpoint at ``step`` (default: the latest). Without an explicit step, a latest
        checkpoint that cannot be read falls back to the one before it, with a warning."""
        mgr = self._manager(phase)
        steps = sorted(mgr.all_steps(), reverse=True) if step is None else [step]
        errors = []
        for i, s in enumerate(steps):
            try:
                out = self._restore(mgr, phase, template, s)
            except CheckpointMismatchError as e:
                errors.append((s, e))
                if i + 1 < len(steps):
                    warnings.warn(f"{e} -- falling back to the {phase} checkpoint at step {steps[i + 1]}")
                continue
            if errors and step is None:  # keep the unreadable newer ones aside, out of the run's way
                self._set_aside(phase, [bad for bad, _ in errors])
            return out
        if not errors:
            raise CheckpointMismatchError(f"no {phase} checkpoint in {os.path.join(self.directory, phase)}")
        raise errors[0][1]

    def _set_aside(self, phase: str, steps: list[int]) -> None:
        self._managers.pop(phase).close()
        aside = os.path.join(self.directory, f"{phase}_unreadable")
        os.makedirs(aside, exist_ok=True)
        for s in steps:
            os.replace(os.path.join(self.directory, phase, str(s)), os.path.join(aside, str(s)))
        warnings.warn(f"moved the unreadable {phase} checkpoint(s) {steps} to {aside}")

    def _restore(self, mgr, phase: str, template: Any, step: int) -> tuple[Any, dict]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        where = f"the {phase} checkpoint at step {step} in {os.path.join(self.directory, phase)}"
        try:
            out = mgr.restore(step, args=args)
        except ValueError as e:  # orbax: tree structure or shapes differ
            detail = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            if "corrupt" in detail.lower() or "unexpected end" in detail.lower():
                raise CheckpointMismatchError(f"{where} cannot be read ({detail})") from None
            raise CheckpointMismatchError(
                f"{where} does not match "
                f"the state this run builds (a different config, e.g. seeds, networks or replay capacity, or a "
                f"checkpoint from another smac_jax version). "
                f"Resume with the config that wrote it, or start a fresh --workdir. orbax said: {detail}") from None
        except Exception as e:  # noqa: BLE001  (missing / truncated / garbled files: orbax, tensorstore, json)
            detail = (str(e).splitlines() or [type(e).__name__])[0][:300]
            raise CheckpointMismatchError(f"{where} cannot be read ({type(e).__name__}: {detail})") from None
        meta = out["meta"]
        if meta is None:
            raise CheckpointMismatchError(f"{where} cannot be read (its metadata is missing)")
        return out["state"], dict(meta)

    def close(self) -> None:
        for m in self._managers.values():
            m.close()
