"""The local stack's state folder (issue 20, item 6): a forget is saved before its result appears
(a SIGKILL right after it cannot bring the face back), the folder is its owner's only, and what
AWS expires by itself (the bucket's lifecycle rules, the tables' TTL) expires locally too."""
from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

from support.cli import lambdaface
from support.stack import JOBS_TABLE, StackClients, StackProcess

from lambdaface.local import expiry
from lambdaface.local.spec import stack_spec
from lambdaface.template import TEMPLATE, load_template

DAY_S = 86400


def test_a_forget_survives_a_crash_right_after_its_result(tmp_path: Path, faces_dir: Path) -> None:
    state = tmp_path / "state"
    with StackProcess(state, "--autosave", "0", workers=1) as first:
        for person, photo in (("john", "seed/john0.jpg"), ("obama", "people/obama/obama.jpg")):
            enrolled = lambdaface("enroll", person, str(faces_dir / photo), stack=first)
            assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert first.stop() == 0  # saved: john and obama enrolled
    with StackProcess(state, "--autosave", "0", workers=1) as second:
        forgot = lambdaface("forget", "john", stack=second)
        assert "forgot john: 1 face(s) removed from the gallery" in forgot.stdout, forgot.stdout + forgot.stderr
        second.stop(signal.SIGKILL)  # no save at stop, and no autosave ever
    with StackProcess(state, "--autosave", "0", workers=1) as third:
        aws = StackClients(third)
        assert {face["person"] for face in aws.gallery_faces()} == {"obama"}
        assert aws.s3.list_objects_v2(Bucket=third.bucket, Prefix="models/john/").get("KeyCount") == 0
        again = lambdaface("recognize", "--json", str(faces_dir / "seed/john1.jpg"), stack=third)
        assert json.loads(again.stdout)["people"] == [], again.stdout + again.stderr
        assert third.stop() == 0


def test_the_state_folder_is_its_owners_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for folder in (state, state / "logs", state / "blobs"):  # as an older stack left them
        folder.mkdir(mode=0o755, parents=True)
        os.chmod(folder, 0o755)
    (state / "logs" / "EnrollFunction.log").write_text("old\n")
    os.chmod(state / "logs" / "EnrollFunction.log", 0o644)
    with StackProcess(state, workers=0) as stack:
        stack.client("s3").put_object(Bucket=stack.bucket, Key="queries/a.jpg", Body=b"photo")
        assert stack.stop() == 0
    found = [state, *state.rglob("*")]
    assert {p.name for p in found} >= {"state.json", "blobs", "logs", ".lock", "EnrollFunction.log", "UnknownsSweepFunction.log"}
    assert len(list((state / "blobs").iterdir())) == 1
    for path in found:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_the_lifecycle_rules_and_ttl_expire_locally(tmp_path: Path) -> None:
    with StackProcess(tmp_path / "state", "--autosave", "0", workers=0) as stack:
        spec = stack_spec(load_template(TEMPLATE), bucket=stack.bucket)  # RetentionDays 30, work/ 1 day; JobsTable's TTL
        aws = StackClients(stack)
        rules = aws.s3.get_bucket_lifecycle_configuration(Bucket=stack.bucket)["Rules"]
        assert {(r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules} == {("queries/", 30), ("results/", 30), ("work/", 1)}
        keys = ["queries/a.jpg", "results/queries/a.jpg.json", "work/v/segment-0.json", "models/p/a.jpg", "gallery/x"]
        for key in keys:
            aws.s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
        now = time.time()
        for job, expires in (("past", now - 10), ("future", now + 10 * DAY_S), ("soon", now + 3)):
            aws.dynamodb.put_item(TableName=JOBS_TABLE, Item={"job_id": {"S": job}, "expires_at": {"N": str(int(expires))}})
        aws.dynamodb.put_item(TableName=JOBS_TABLE, Item={"job_id": {"S": "text"}, "expires_at": {"S": "0"}})

        def left() -> tuple[set[str], set[str]]:
            objects = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])}
            return objects, {item["job_id"]["S"] for item in aws.dynamodb.scan(TableName=JOBS_TABLE)["Items"]}

        assert expiry.expire(spec, aws.s3, aws.dynamodb, now) == {"objects": 0, "items": 1}
        assert left() == (set(keys), {"future", "soon", "text"})
        assert expiry.expire(spec, aws.s3, aws.dynamodb, now + 1.5 * DAY_S) == {"objects": 1, "items": 1}
        assert left() == (set(keys) - {"work/v/segment-0.json"}, {"future", "text"})
        assert expiry.expire(spec, aws.s3, aws.dynamodb, now + 29 * DAY_S) == {"objects": 0, "items": 1}  # "future"
        assert expiry.expire(spec, aws.s3, aws.dynamodb, now + 30.5 * DAY_S) == {"objects": 2, "items": 0}
        assert left() == ({"models/p/a.jpg", "gallery/x"}, {"text"})
        # the stack applies them itself, at its start (and at every autosave): an old query, saved and restored
        aws.s3.put_object(Bucket=stack.bucket, Key="queries/old.jpg", Body=b"old")
        aws.s3.put_object(Bucket=stack.bucket, Key="queries/new.jpg", Body=b"new")
        aws.dynamodb.put_item(TableName=JOBS_TABLE, Item={"job_id": {"S": "brief"}, "expires_at": {"N": str(int(time.time()) + 1)}})
        assert stack.stop() == 0
    manifest_path = tmp_path / "state" / "state.json"
    manifest = json.loads(manifest_path.read_text())
    for o in manifest["objects"]:
        if o["key"] == "queries/old.jpg":
            o["last_modified"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 31 * DAY_S))
    manifest_path.write_text(json.dumps(manifest))
    time.sleep(2)  # "brief" is past its TTL
    with StackProcess(tmp_path / "state", "--autosave", "0", workers=0) as again:
        aws = StackClients(again)
        objects = {o["Key"]: o for o in aws.s3.list_objects_v2(Bucket=again.bucket).get("Contents", [])}
        assert set(objects) == {"models/p/a.jpg", "gallery/x", "queries/new.jpg"}
        assert {item["job_id"]["S"] for item in aws.dynamodb.scan(TableName=JOBS_TABLE)["Items"]} == {"text"}
        assert "expired 1 objects and 1 items" in again.stderr()
        # a restored object keeps its age (the lifecycle counts from its writing, not the restart)
        assert objects["gallery/x"]["LastModified"].timestamp() < time.time() - 2
        assert again.stop() == 0
