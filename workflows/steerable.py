"""Pause, resume and skip-step: the handlers every playbook workflow inherits (re-exported by workflows/play.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.messages import ControlEntry, PausePlay, ResumePlay, SkipResult, SkipStep

if TYPE_CHECKING:
    from workflows.play import Play


class SteerablePlay:
    """Pause, resume and skip-step, the same for every playbook workflow (their
    handlers are inherited). A subclass keeps `self._play` and says which of its
    pending steps a person may skip, and how to skip one."""

    _play: Play

    def _skippable(self) -> dict[str, str]:
        """Pending steps that may be skipped: step -> title."""
        raise NotImplementedError

    def _skip(self, step: str, why: str) -> None:
        raise NotImplementedError

    def _next(self) -> tuple[str, datetime | None]:
        raise NotImplementedError

    def _control(self, kind: str, by: str, note: str = "") -> None:
        self._play.control.log.append(ControlEntry(kind=kind, at=workflow.now(), by=by, note=note))
        self._play.log(f"play_{kind}", by=by, note=note)
        self._play.wake()

    @workflow.signal
    def pause_play(self, req: PausePlay) -> None:
        control = self._play.control
        if control.paused_at is None:
            control.paused_at, control.paused_by, control.pause_reason = workflow.now(), req.by, req.reason
            self._control("paused", req.by, req.reason)

    @workflow.signal
    def resume_play(self, req: ResumePlay) -> None:
        control = self._play.control
        if control.paused_at is not None:
            control.paused_at, control.paused_by, control.pause_reason = None, "", ""
            self._control("resumed", req.by)

    @workflow.update
    def skip_step(self, req: SkipStep) -> SkipResult:
        self._skip(req.step, f"skipped by {req.by}" + (f": {req.reason}" if req.reason else ""))
        self._control("skipped", req.by, f"{req.step} {req.reason}".strip())
        step, at = self._next()
        return SkipResult(skipped=req.step, next_step=step, next_at=at)

    @workflow.query
    def skippable_steps(self) -> dict[str, str]:
        """What `skip_step` would accept now (the console offers these); step -> title."""
        return self._skippable()

    @skip_step.validator
    def _validate_skip_step(self, req: SkipStep) -> None:
        skippable = self._skippable()
        if req.step not in skippable:
            choices = ", ".join(skippable) or "none right now"
            raise ApplicationError(f"{req.step!r} is not a pending step that can be skipped (can skip: {choices})",
                                   type="InvalidSkip")
