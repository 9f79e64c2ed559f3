"""Name a face once (issue 15), end to end: `lambdaface local --remember-unknowns` with two workers, the
real handlers and models, and the `lambdaface unknowns` / `name` / `forget` commands as a user runs
them, on the photos of ../shared/faces with nobody enrolled at first."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.cli import lambdaface
from support.stack import StackClients, StackProcess, stack_fixture
from test_unknowns import purity_and_completeness

from shared.config import EngineConfig
from shared.engine.decode import decode_image
from shared.engine.faces import find_faces

UNKNOWNS_TABLE = "lambdaface-UnknownsTable"
stack = stack_fixture("unknowns", "--remember-unknowns", workers=2)


def run(*args: str, stack: StackProcess, ok: bool = True) -> str:
    done = lambdaface(*args, stack=stack)
    assert (done.returncode == 0) == ok, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def clusters(stack: StackProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run("unknowns", "--json", stack=stack).splitlines() if line]


def result(aws: StackClients, source: str) -> dict[str, Any]:
    return aws.result(source)


def unknown_items(aws: StackClients) -> list[dict[str, Any]]:
    return aws.scan(UNKNOWNS_TABLE)


def test_group_name_rerun_and_forget(stack: StackProcess, faces_dir: Path, labels: list[dict[str, str]],
                                     tmp_path: Path) -> None:
    aws = StackClients(stack)
    truth = {Path(row["path"]).name: row["people"] for row in labels if row["path"].startswith("people/")}
    photos = [str(faces_dir / row["path"]) for row in labels if row["path"].startswith("people/")]
    run("recognize", *photos, "--timeout", "300", stack=stack)

    # Two workers may each have started a cluster for one new person: the sweep's regroup merges them.
    run("unknowns", "regroup", stack=stack)
    listed = clusters(stack)
    cluster_of = {Path(source).name: row["cluster"] for row in listed for source in row["sources"]}
    assert set(cluster_of) == set(truth)
    purity, completeness = purity_and_completeness(truth, cluster_of)
    print(f"\nlocal stack, 2 workers: {len(truth)} photos of {len(set(truth.values()))} people -> "
          f"{len(listed)} clusters; purity {purity:.3f}, completeness {completeness:.3f}")
    assert (purity, completeness) == (1.0, 1.0)
    # Each result names the cluster it joined then (an id a merge retired still resolves).
    for name in truth:
        face = result(aws, f"queries/{name}")["faces"][0]
        assert face["person"] is None and face["cluster"].startswith("u-")
    kit, rose = cluster_of["kit1.jpg"], cluster_of["rose1.jpg"]
    old_kit_id = result(aws, "queries/kit2.jpg")["faces"][0]["cluster"]

    shown = run("unknowns", "show", old_kit_id, "--out", str(tmp_path / "kit"), stack=stack)
    crops = sorted((tmp_path / "kit").glob("*.jpg"))
    assert len(crops) == 3 and "queries/kit3.jpg" in shown
    for crop in crops:  # each crop holds the face, large enough to enroll from
        assert len(find_faces(decode_image(crop.read_bytes(), EngineConfig()), EngineConfig())) == 1

    named = run("name", old_kit_id, "kit", stack=stack)
    assert "named" in named and all(f"queries/kit{i}.jpg" in named for i in (1, 2, 3)), named
    assert sorted(aws.keys("models/kit/")) == [f"models/kit/{kit}-{i}.jpg" for i in (1, 2, 3)]
    assert not [i for i in unknown_items(aws) if i["person"] == kit]
    assert kit not in {row["cluster"] for row in clusters(stack)}

    # A new photo of kit is recognized; rose, still unknown, joins her cluster.
    run("recognize", str(faces_dir / "multi/kit_with_rose.jpg"), stack=stack)
    together = result(aws, "queries/kit_with_rose.jpg")
    assert together["people"] == ["kit"]
    (unknown,) = [f for f in together["faces"] if f["person"] is None]
    assert unknown["cluster"] == rose

    # Bad requests: clear errors, nothing changed.
    assert "already named 'kit'" in run("name", kit, "someone", stack=stack, ok=False)
    assert "no unknown faces in cluster u-000000000000" in run("name", "u-000000000000", "x", stack=stack, ok=False)
    assert "not a cluster id" in run("name", "rose", "rose", stack=stack, ok=False)
    assert "must be 1-64 letters" in run("name", rose, "rose leslie", stack=stack, ok=False)
    assert not aws.keys("models/rose")

    # Naming with --rerun: the earlier results now name her.
    renamed = run("name", rose, "rose", "--rerun", stack=stack)
    assert "re-recognizing 3 source(s)" in renamed, renamed
    for source in ("queries/rose1.jpg", "queries/rose2.jpg", "queries/kit_with_rose.jpg"):
        assert "rose" in result(aws, source)["people"], source
    assert result(aws, "queries/kit_with_rose.jpg")["people"] == ["kit", "rose"]

    # Forgetting the person: out of the gallery, and nothing of hers in the unknown store.
    run("forget", "rose", stack=stack)
    assert not [f for f in aws.gallery_faces() if f["person"] == "rose"]
    items = unknown_items(aws)
    rose_sources = {"queries/rose1.jpg", "queries/rose2.jpg", "queries/kit_with_rose.jpg"}
    assert not [i for i in items if i.get("source") in rose_sources and not i["person"].startswith("#")]
    assert not [i for i in items if i["person"].startswith("#log") and "vector" in i and i.get("face_person") in (rose, kit)]
    run("recognize", str(faces_dir / "people/rose_leslie/rose2.jpg"), stack=stack)
    again = result(aws, "queries/rose2.jpg")["faces"][0]
    assert again["person"] is None and again["cluster"] != rose  # a fresh start: her old cluster is gone


def test_forget_all_empties_the_store(stack: StackProcess, faces_dir: Path) -> None:
    run("recognize", str(faces_dir / "people/biden/biden2.jpg"), stack=stack)
    assert clusters(stack)
    assert "forgot every unknown face" in run("unknowns", "forget", "--all", stack=stack)
    assert clusters(stack) == []
    assert "no unknown faces are remembered" in run("unknowns", stack=stack)
    aws = StackClients(stack)
    assert not [i for i in unknown_items(aws) if not i["person"].startswith("#") or "vector" in i]


def test_a_wrong_table_is_one_clear_line(stack: StackProcess) -> None:
    said = run("unknowns", "--table", "no-such-table", stack=stack, ok=False)
    assert "UnknownsTableName" in said and "Traceback" not in said


def test_restarting_with_remembering_off_forgets_what_was_kept(faces_dir: Path, tmp_path: Path) -> None:
    """The sweep runs when the stack starts (its ready line waits for it, up to 10 s): kept faces,
    restored from the saved state, are gone."""
    state = tmp_path / "state"
    with StackProcess(state, "--remember-unknowns") as on:
        run("recognize", str(faces_dir / "people/kit_harington/kit1.jpg"), stack=on)
        kept = [i for i in unknown_items(StackClients(on)) if "embedding" in i]
        assert len(kept) == 1
        assert on.stop() == 0
    with StackProcess(state) as off:
        aws = StackClients(off)
        assert aws.keys("queries/") == ["queries/kit1.jpg"], "the saved state was restored"
        off.wait_for_line(r"^UnknownsSweepFunction scheduled run 1: succeeded")  # before ready, unless it was slow
        assert not [i for i in unknown_items(aws) if "embedding" in i or "vector" in i], "\n".join(off.lines)
        assert off.stop() == 0
