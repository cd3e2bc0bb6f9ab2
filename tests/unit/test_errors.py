"""The error tree is whole: the errors defined beside the code that raises them hang from it too."""

from __future__ import annotations

from worker.errors import BoxcutError, InvalidInput
from worker.jobs.evidence_signing import ReportRejected
from worker.ssf.keys import KeysUnavailable
from worker.ssf.verifier import SetRefused
from worker.transactions import GuardFailed


def test_the_stray_errors_are_in_the_tree() -> None:
    assert issubclass(SetRefused, InvalidInput)
    assert issubclass(ReportRejected, InvalidInput)
    assert issubclass(ReportRejected, ValueError)  # as it was before it joined the tree
    assert issubclass(GuardFailed, BoxcutError)
    assert issubclass(KeysUnavailable, BoxcutError)
