"""`lambdaface forget PERSON` and `lambdaface audit PERSON` end to end (issue 20): `lambdaface local` in a
subprocess with the real handlers and models, the commands as a user runs them.

One of john's images is deleted while the bucket notifies nothing (its forget message is lost, as a
dead letter would lose it); `forget john` deletes the other, also forgets the face whose image was
already gone, and prints a receipt with nothing left. The local state folder is clean once the
stack has saved again (autosave every 2 s here)."""
from __future__ import annotations

from pathlib import Path

from support.cli import lambdaface
from support.stack import StackProcess, stack_fixture
from support.waits import wait_until

stack = stack_fixture("forget", "--autosave", "2", workers=1)


def audit(stack: StackProcess, person: str, *more: str) -> tuple[int, str]:
    done = lambdaface("audit", person, *more, stack=stack, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_forget_removes_a_face_whose_event_was_lost_and_the_receipt_is_clean(stack: StackProcess, faces_dir: Path) -> None:
    seed = faces_dir / "seed"
    enrolled = lambdaface("enroll", "john", str(seed / "john0.jpg"), str(seed / "john1.jpg"), stack=stack)
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    state = ("--state-dir", str(stack.state_dir))
    wait_until("john's photos saved in the state folder",
               lambda: "LEFT  state: state.json: models/john/john0.jpg" in audit(stack, "john", *state)[1], timeout=60, every=1)

    s3 = stack.client("s3")
    notifications = s3.get_bucket_notification_configuration(Bucket=stack.bucket)
    notifications.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=stack.bucket, NotificationConfiguration={})
    try:
        s3.delete_object(Bucket=stack.bucket, Key="models/john/john0.jpg")  # no event: a lost forget
    finally:
        s3.put_bucket_notification_configuration(Bucket=stack.bucket, NotificationConfiguration=notifications)
    code, out = audit(stack, "john")
    assert code == 1 and "LEFT  gallery: face item models/john/john0.jpg" in out, out

    forgot = lambdaface("forget", "john", "--receipt", stack=stack)
    out = forgot.stdout + forgot.stderr
    assert forgot.returncode == 0, out
    assert "forgot john: 2 face(s) removed from the gallery, 1 image(s) deleted, 1 of them without an image" in out
    assert "receipt for john: no copy of a face left" in out
    # the state folder too, once the stack has saved again
    wait_until("a clean receipt with the state folder", lambda: audit(stack, "john", *state)[0] == 0, timeout=60, every=1)
    code, out = audit(stack, "john", *state)
    assert f"state folder {stack.state_dir}" in out
