"""The person index kept with the results: where each person (or unknown cluster) appears.

- `record(config, document)`: a recognition's result replaces its source's entries (one per named
  or clustered face of a photo, one per person or cluster of a video). A redelivery of a job whose
  entries are written writes nothing; a new recognition of the source replaces them.
- `forget_person`: the last face of a person left the gallery: their entries go. A recognition that
  matched the person just before (its gallery still held them) checks, once its entries are
  written, that each person it names still has a face; the entries of one who has none go too (or
  to the person they are being merged into), so a forget racing a recognition leaves no entry
  behind, whichever writes last.
- `move`: a cluster was named (entries go to the person) or merged into another (to the survivor),
  or a person merged into another (`lambdaface merge`).
- `begin_merge` / `merging_into` / `end_merge`: a person being merged into another; meanwhile the
  forget of their last face moves their entries to the other instead of deleting them.
- `find`: one page of a person's or cluster's appearances, newest first.

The table's layout is in shared/aws/people_index_table.py. Without PEOPLE_INDEX_TABLE nothing is kept.
"""
from __future__ import annotations

import calendar
import time
from typing import Any, Iterable

from shared.aws.people_index_table import Conflict, PeopleIndexTable, cluster_pk, person_pk
from shared.aws.gallery_table import GalleryTable
from shared.config import Config, PipelineConfig
from shared.engine.clustering import is_cluster_id
from shared.pipeline import keys

ATTEMPTS = 8  # manifest writes lost to concurrent writers before giving up (the message is retried)


def who_key(name: str) -> str:
    """The partition of a person, or of a cluster id (`u-...`)."""
    return cluster_pk(name) if is_cluster_id(name) else person_pk(name)


def _epoch(iso_time: str) -> int:
    return calendar.timegm(time.strptime(iso_time[:19], "%Y-%m-%dT%H:%M:%S"))


def entries_of(document: dict[str, Any], retention_days: int) -> list[dict[str, Any]]:
    """The index entries a result document stands for (none for a failed one)."""
    if document.get("status") != "succeeded" or document.get("kind") != "recognize":
        return []
    source, at = document["source"], document["finished_at"]
    common = {"source": source, "result_key": keys.result_key(source), "finished_at": at,
              "expires_at": _epoch(at) + (retention_days + 1) * 86400}
    out = []
    video = document.get("media") == "video"
    for n, found in enumerate(document.get("appearances" if video else "faces") or []):
        name = found.get("person") or found.get("cluster")
        if name:
            where = ({"media": "video", "intervals": found["intervals"], "seconds": found.get("seconds")} if video
                     else {"media": "photo", "box": found["box"], "distance": found.get("distance")})
            if not video and named_by_hand(found):
                where["by_hand"] = True  # a person named it, not the gallery: kept whether or not they are enrolled
            out.append({**_who(found), **common, **where, "pk": who_key(name), "sk": f"{at}#{source}#{n}"})
    return out


def named_by_hand(face: dict[str, Any]) -> bool:
    """Was this face named by a person (`correct --is`, `add-face --is`) rather than matched?"""
    return bool(face.get("named")) or any(str(c).startswith("is ") for c in face.get("corrected") or [])


def _who(found: dict[str, Any]) -> dict[str, Any]:
    return {"person": found["person"]} if found.get("person") else {"cluster": found["cluster"]}


def record(config: Config, document: dict[str, Any], revision: str | None = None) -> int:
    """Make the index list exactly `document`'s entries for its source; the items written. An edit
    of a job's result (e.g. an added face) passes its `revision` (else the job id identifies it)."""
    p = config.pipeline
    if not p.people_index_table or document.get("kind") != "recognize":
        return 0
    table = PeopleIndexTable(p.people_index_table)
    source, job_id = document["source"], revision or document["job_id"]
    new = {e["sk"]: e for e in entries_of(document, p.retention_days)}
    for _ in range(ATTEMPTS):
        manifest = table.manifest(source) or {}
        if manifest.get("job_id") == job_id and manifest.get("done"):
            return 0  # a redelivery: this result's entries are there
        version = manifest.get("version")
        listed = {**manifest.get("stale", {}), **manifest.get("entries", {})}
        stale = {sk: pk for sk, pk in listed.items() if sk not in new or new[sk]["pk"] != pk}
        fields = {"job_id": job_id, "finished_at": document["finished_at"], "entries": {sk: e["pk"] for sk, e in new.items()},
                  "expires_at": max([e["expires_at"] for e in new.values()] + [manifest.get("expires_at", 0)])}
        try:
            table.put_manifest(source, {**fields, "done": False, "version": (version or 0) + 1, "stale": stale}, version)
        except Conflict:
            continue
        table.put_entries(new.values())
        table.delete_entries((pk, sk) for sk, pk in stale.items())
        _drop_forgotten(p, table, new.values())
        _mark_done(table, source, job_id)
        return table.writes
    raise Conflict(f"the index of {source} kept changing")


def _drop_forgotten(p: PipelineConfig, table: PeopleIndexTable, written: Iterable[dict[str, Any]]) -> None:
    """Delete the just written entries of each named person with no face left in the gallery (move
    them, when the person is being merged into another: as `after_forget` does).

    A forget removes the face, then the person's entries; this reads the gallery after writing
    them, so either the forget's delete sees these entries or this read sees the face gone."""
    if not p.gallery_table:
        return
    gallery = GalleryTable(p.gallery_table, p.gallery_shards)
    by_person: dict[str, list[tuple[str, str]]] = {}
    for entry in written:
        if entry.get("person") and not entry.get("by_hand"):
            by_person.setdefault(entry["person"], []).append((entry["pk"], entry["sk"]))
    for person, found in by_person.items():
        if not gallery.has_faces(person):
            into = merging_into(p, person)
            if into:
                move(p, person, into)
            else:
                table.delete_entries(found)


def _mark_done(table: PeopleIndexTable, source: str, job_id: str) -> None:
    """The manifest's stale entries are deleted: say so (unless a newer result took the source over)."""
    for _ in range(ATTEMPTS):
        manifest = table.manifest(source) or {}
        if manifest.get("job_id") != job_id:
            return
        try:
            table.put_manifest(source, {**manifest, "done": True, "stale": {}, "version": manifest["version"] + 1},
                               manifest["version"])
            return
        except Conflict:
            continue


def forget_person(p: PipelineConfig, person: str) -> int:
    """Delete every entry of `person`; how many."""
    if not p.people_index_table:
        return 0
    table = PeopleIndexTable(p.people_index_table)
    found = [(e["pk"], e["sk"]) for e in table.entries(person_pk(person))]
    table.delete_entries(found)
    return len(found)


def after_forget(p: PipelineConfig, gallery: GalleryTable, person: str) -> int:
    """A face of `person` left the gallery: when it was their last, their entries go (to the person
    they are being merged into, when a merge is under way); how many."""
    if not p.people_index_table or gallery.has_faces(person):
        return 0
    into = merging_into(p, person)
    return move(p, person, into) if into else forget_person(p, person)


MERGE_MARK_S = 86400  # a merge left unfinished stops redirecting forgets after this (re-running it marks again)


def begin_merge(p: PipelineConfig, person: str, into: str, armed: bool = False, now: float | None = None) -> bool:
    """Mark `person` as being merged into `into` (`armed`: their images are being copied there, so the
    forget of their last face moves their entries to `into`); False when a merge into someone else is
    under way."""
    if not p.people_index_table:
        return True
    at = int(time.time() if now is None else now)
    return PeopleIndexTable(p.people_index_table).put_merge_marker(person, into, at + MERGE_MARK_S, at, armed)


def merge_mark(p: PipelineConfig, person: str, now: float | None = None) -> dict[str, Any] | None:
    """The unexpired merge mark of `person` ({"into", "armed"}), or None."""
    if not p.people_index_table:
        return None
    mark = PeopleIndexTable(p.people_index_table).merge_marker(person)
    if not mark or mark.get("expires_at", 0) <= (time.time() if now is None else now):
        return None
    return {"into": str(mark["into"]), "armed": bool(mark.get("armed"))}


def merging_into(p: PipelineConfig, person: str, now: float | None = None) -> str | None:
    """Who `person`'s entries go to when their last face is forgotten: the person of an armed merge
    mark (a forget that wins the race before any image is copied deletes them, as any forget), or None."""
    mark = merge_mark(p, person, now)
    return mark["into"] if mark and mark["armed"] else None


def end_merge(p: PipelineConfig, person: str) -> None:
    """The merge of `person` is done: forgetting them deletes their entries again."""
    if p.people_index_table:
        PeopleIndexTable(p.people_index_table).delete_merge_marker(person)


def sources_of(p: PipelineConfig, name: str) -> set[str]:
    """Every source where `name` (a person or cluster id) appears."""
    if not p.people_index_table:
        return set()
    return {e["source"] for e in PeopleIndexTable(p.people_index_table).entries(who_key(name))}


def has_entries(p: PipelineConfig, name: str) -> bool:
    """Whether the index lists any appearance of `name`."""
    return bool(p.people_index_table) and bool(PeopleIndexTable(p.people_index_table).query(who_key(name), limit=1)[0])


def forget_clusters(p: PipelineConfig, clusters: Iterable[str]) -> int:
    """Delete every entry of these clusters; how many."""
    if not p.people_index_table:
        return 0
    table = PeopleIndexTable(p.people_index_table)
    found = [(e["pk"], e["sk"]) for c in clusters for e in table.entries(cluster_pk(c))]
    table.delete_entries(found)
    return len(found)


def move(p: PipelineConfig, from_name: str, to_name: str) -> int:
    """Move every entry of `from_name` (a cluster, or a person) to `to_name` (a person, or the cluster
    it merged into); how many. Each entry: its copy is written, the source's manifest repointed (if it still
    lists the entry there: else a newer result replaced it, and the copy is deleted), then the old
    one deleted. Idempotent: run again, it moves what is left."""
    if not p.people_index_table:
        return 0
    table = PeopleIndexTable(p.people_index_table)
    old_pk, new_pk = who_key(from_name), who_key(to_name)
    moved = 0
    for entry in list(table.entries(old_pk)):
        copy = {k: v for k, v in entry.items() if k not in ("person", "cluster")}
        copy.update({"pk": new_pk, **({"cluster": to_name} if new_pk.startswith("c#") else {"person": to_name})})
        table.put_entry(copy)
        if table.repoint(entry["source"], entry["sk"], old_pk, new_pk):
            table.delete_entry(old_pk, entry["sk"])
            moved += 1
        else:
            table.delete_entry(new_pk, entry["sk"])
    return moved


def merge_clusters(p: PipelineConfig, merges: dict[str, str]) -> int:
    """After a regroup: each retired cluster's entries go to its survivor; how many."""
    return sum(move(p, retired, survivor) for retired, survivor in merges.items())


def find(table_name: str, name: str, since: str | None = None, limit: int = 50,
         start: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """One page of where `name` (a person or cluster id) appears, newest first, and the key to go on from."""
    return PeopleIndexTable(table_name).query(who_key(name), since, limit, start)
