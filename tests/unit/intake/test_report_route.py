"""GET /v1/jobs/{job_id}/report: the evidence report over the operator API, signed as `boxcut report` signs it."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.unit.intake_fixtures import INTAKE_TOKEN, make_intake
from tests.unit.jobs.test_report import approved_job
from worker.jobs import evidence_signing

KEY = Ed25519PrivateKey.generate()
PEM = KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def test_the_report_is_signed_json_that_verifies_as_saved() -> None:
    intake = make_intake({"BOXCUT_REPORT_SIGNING_KEY": PEM})
    job_id = approved_job(intake.store)
    answer = intake.operator_get(f"/v1/jobs/{job_id}/report")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    verified = evidence_signing.verify(answer.content, trusted=KEY.public_key())
    assert verified.trusted and verified.job_id == job_id
    assert answer.json()["report"]["calls"][0]["request_id"] == "box-req-42"


def test_the_markdown_form_and_an_unsigned_json_form() -> None:
    intake = make_intake()
    job_id = approved_job(intake.store)
    markdown = intake.operator_get(f"/v1/jobs/{job_id}/report?format=md")
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith(f"# Evidence report: job {job_id}")
    unsigned = intake.operator_get(f"/v1/jobs/{job_id}/report")
    assert unsigned.status_code == 200 and unsigned.json()["signature"] is None


def test_an_unknown_job_is_404_and_an_intake_token_is_not_enough() -> None:
    intake = make_intake()
    missing = intake.operator_get("/v1/jobs/j-0123456789abcdef/report")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    job_id = approved_job(intake.store)
    assert intake.operator_get(f"/v1/jobs/{job_id}/report", token=INTAKE_TOKEN).status_code in (401, 403)
    assert intake.operator_get(f"/v1/jobs/{job_id}/report?format=pdf").status_code == 422
