"""`lambdaface audit PERSON` (issue 20): the receipt finds every copy of a face of PERSON, in the bucket
and the tables of moto's server, after real enrollments through the enroll handler; it exits 1 while
one is left (a forget lost to the dead-letter queue) and 0 once reconciliation has removed it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.moto import MotoResources
from test_reconcile import Stack, enroll_john, stack  # noqa: F401 (the fixture)

from handlers import enroll
from lambdaface import audit, cli
from shared.aws.unknowns_table import UnknownFace, UnknownStore, face_id
from shared.config import current_config
from shared.pipeline import unknowns


def places(found: list[audit.Finding]) -> list[str]:
    return sorted(f.place for f in found if f.face)


def run_audit(aws: MotoResources, person: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["audit", person, "--endpoint-url", aws.endpoint, "--bucket", aws.bucket,
                     "--gallery-table", aws.gallery_table, "--unknowns-table", aws.unknowns_table])
    return code, capsys.readouterr().out


def test_the_receipt_lists_every_copy_until_the_forget_and_the_reconciliation_are_done(
        stack: Stack, faces_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    aws = stack.aws
    enroll_john(stack, faces_dir, "john0", "john1")
    found = audit.audit(aws.bucket, "john", aws.gallery_table, aws.unknowns_table)
    # two photos, two face items, the newest change's log vector (the log is trimmed up to the
    # snapshot a newer one replaces) and the published snapshot (one after every change here)
    assert places(found) == ["change log", "gallery", "gallery", "models", "models", "snapshot"], [f.line() for f in found]
    code, out = run_audit(aws, "john", capsys)
    assert code == 1 and "receipt for john: 6 copies of a face left" in out
    assert run_audit(aws, "nobody", capsys)[0] == 0

    aws.delete("models/john/john1.jpg")
    assert stack.deliver() == {"batchItemFailures": []}  # forgotten as usual
    aws.delete("models/john/john0.jpg")
    stack.drop()  # this forget is lost: the face stays
    found = audit.audit(aws.bucket, "john", aws.gallery_table, aws.unknowns_table)
    assert "models" not in places(found) and "gallery" in places(found), [f.line() for f in found]
    assert any("models/john/john0.jpg" in f.what for f in found if f.place == "gallery")
    assert run_audit(aws, "john", capsys)[0] == 1

    assert stack.run()["forgotten"] == 1
    assert stack.deliver() == {"batchItemFailures": []}
    code, out = run_audit(aws, "john", capsys)
    assert code == 0, out
    assert "receipt for john: no copy of a face left" in out


def test_a_change_log_vector_is_a_copy(stack: Stack, faces_dir: Path) -> None:  # noqa: F811
    aws = stack.aws
    enroll_john(stack, faces_dir, "john0")
    # the log entry of an enrollment keeps its vector until the face changes again (or a snapshot
    # trims the log): with snapshots every 1000 changes it is there
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAMBDAFACE_GALLERY_COMPACT_EVERY", "1000")
        aws.put("models/john/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
        assert stack.deliver() == {"batchItemFailures": []}
    found = audit.audit(aws.bucket, "john", aws.gallery_table)
    assert [f for f in found if f.place == "change log" and "models/john/john1.jpg" in f.what]


def test_faces_left_in_a_cluster_named_after_the_person_are_copies(stack: Stack, photos: object) -> None:  # noqa: F811
    aws = stack.aws
    config = current_config()
    store = UnknownStore(aws.unknowns_table, aws.bucket)
    embedding = np.zeros(128, dtype=np.float32)
    embedding[0] = 1
    store.remember(UnknownFace(face_id("queries/k.jpg", "e", "0"), "u-00000000000a", "queries/k.jpg",
                               {"left": 0, "top": 0, "width": 50, "height": 50}, "2026-01-01T00:00:00.000Z",
                               embedding=embedding, etag="e"), "", "2026-01-01T00:00:00.000Z")
    assert audit.audit(aws.bucket, "kit", aws.gallery_table, aws.unknowns_table) == []  # not named yet
    assert store.mark_named("u-00000000000a", "kit", 30)
    found = audit.audit(aws.bucket, "kit", aws.gallery_table, aws.unknowns_table)
    assert places(found) == ["unknowns"]
    unknowns.forget_cluster(store, config.pipeline, "u-00000000000a")
    assert places(audit.audit(aws.bucket, "kit", aws.gallery_table, aws.unknowns_table)) == []


def test_a_place_that_cannot_be_searched_is_not_called_clean(aws: MotoResources) -> None:
    found = audit.audit(aws.bucket, "john", "no-such-table", aws.unknowns_table)
    assert {f.place for f in found if f.face and "could not be searched" in f.what} == {"gallery", "change log"}
