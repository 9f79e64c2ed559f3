"""Unknown faces, remembered and grouped (opt-in: LAMBDAFACE_REMEMBER_UNKNOWNS).

- `remember_photo` / `remember_segment` (recognize and video functions): every face that matches
  nobody joins the cluster of its nearest remembered face, or starts one; the result says which
  (`cluster`). A video segment remembers one face per track (its largest), not every frame's.
- `sweep` (the scheduled function, hourly): forgets faces older than the retention (and any that
  joined a cluster while it was being named, and any a gallery still holds whose item DynamoDB's
  TTL removed), then re-groups (Chinese whispers; merges only, recorded). With remembering off it
  forgets everything kept. Each run prints its metrics (metrics.sweep_finished) for the alarms.
- `clusters`, `forget_cluster`, `regroup`: what the `lambdaface unknowns` commands use.
Storage and its guarantees: shared/aws/unknowns_table.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from shared import clock
from shared.aws import gallery_cache
from shared.aws.corrections_table import CorrectionsTable
from shared.aws.gallery_table import Outcome
from shared.aws.unknowns_table import (MERGED, NAMED, REGROUPED, UnknownFace, UnknownStore, face_id, now_iso,
                                       seen_epoch)
from shared.clock import iso
from shared.config import Config, PipelineConfig, current_config
from shared.engine import clustering
from shared.pipeline import metrics, people_index

log = logging.getLogger(__name__)
CLOCK_SLACK_S = 300  # workers' clocks may differ this much: re-grouping looks this much further back
RESERVE_MS = 30_000  # the sweep stops this long before its deadline (then compacts); the next run goes on


def store_for(config: Config, bucket: str) -> UnknownStore:
    return UnknownStore(config.pipeline.unknowns_table, bucket, config.pipeline.gallery_shards,
                        retention_days=config.pipeline.unknown_retention_days)


def remember_photo(config: Config, bucket: str, key: str, etag: str, event: Any, faces: list[Any],
                   entries: list[dict[str, Any]], numbers: list[int] | None = None,
                   excluded: list[set[str]] | None = None) -> None:
    """Remember the unknown faces of one photo; each one's result entry gains its `cluster`.
    `numbers`: each face's position among the faces the engine found (its face id; default its
    position here); `excluded`: per face, clusters a correction keeps it out of (it starts a
    cluster of its own rather than join one of them, or one they were merged into)."""
    unknown = [i for i, entry in enumerate(entries) if entry.get("person") is None]
    if not config.pipeline.remember_unknowns or not unknown:
        return
    store = store_for(config, bucket)
    embeddings = np.stack([faces[i].embedding for i in unknown])
    clusters, new = clustering.assign_marking_new(embeddings, store.galleries(), config.pipeline.unknown_threshold)
    if excluded and any(excluded):
        aliases = store.aliases()
        for n, i in enumerate(unknown):
            kept_out = {store.resolve(c, aliases) for c in excluded[i]}
            if kept_out and store.resolve(clusters[n], aliases) in kept_out:
                clusters[n] = clustering.new_cluster_id()
            if kept_out:
                new[n] = False  # never joined to a concurrent cluster (that could be the one it is kept out of)
    seen = now_iso()  # the retention counts from when a face is remembered
    number = numbers or list(range(len(entries)))
    stored = store_faces(store, config.pipeline, [
        UnknownFace(face_id(key, etag, str(number[i])), cluster, key, entries[i]["box"], seen, embedding=faces[i].embedding,
                    etag=etag) for i, cluster in zip(unknown, clusters)], new, event.sequencer, event.event_time)
    for i, cluster in zip(unknown, stored):
        if cluster is not None:
            entries[i]["cluster"] = cluster


def store_faces(store: UnknownStore, p: PipelineConfig, faces: list[UnknownFace], new: list[bool], sequencer: str,
                event_time: str) -> list[str | None]:
    """Remember `faces` (ordered by the recognition's S3 event); a face that started a cluster then
    joins an older one a concurrent recognition started (`join_concurrent`). Returns each face's
    cluster now, None for a face named or forgotten since (a redelivery: stale, not stored)."""
    clusters: list[str | None] = []
    started = []
    for face, is_new in zip(faces, new):
        outcome = store.remember(face, sequencer, event_time)
        clusters.append(None if outcome.stale else face.cluster)
        if is_new and outcome.applied:
            started.append(len(clusters) - 1)
    galleries = None  # loaded once for every check (again only after a face moved)
    for n in started:
        if galleries is None:
            galleries = store.galleries()
        clusters[n] = join_concurrent(store, p, faces[n], galleries)
        if clusters[n] != faces[n].cluster:
            galleries = None
    store.settle(p.gallery_compact_every)
    return clusters


def join_concurrent(store: UnknownStore, p: PipelineConfig, face: UnknownFace,
                    galleries: list[Any] | None = None) -> str:
    """`face` started a cluster. A recognition at the same moment may have started one for the same
    person: once both are stored, the one that looks later sees the other, and the newer cluster
    (ids sort by creation) joins the older, recorded as a merge. Returns `face`'s cluster now.
    (Two that never see each other are merged by the sweep.) `galleries`: the store as loaded
    after `face` was stored (default: load it now)."""
    remembered = store.galleries() if galleries is None else galleries
    other = clustering.other_cluster(face.embedding, face.cluster, remembered, p.unknown_threshold)
    if other is None or other > face.cluster:
        return face.cluster
    store.record_merge(face.cluster, other, p.unknown_retention_days)
    store.move(face, other)
    return other


@dataclass(frozen=True)
class SeenFace:
    """An unknown face of a video frame: where it is in the segment's `frames` and its embedding."""

    frame: int  # index into frames
    face: int  # index into frames[frame]["faces"]
    embedding: np.ndarray


def remember_segment(config: Config, bucket: str, key: str, etag: str, event_time: str, index: int,
                     frames: list[dict[str, Any]], seen: list[SeenFace]) -> None:
    """Remember one face per track of a video segment's unknown faces (the largest); every face of
    the track gains the track's `cluster` in `frames`."""
    if not config.pipeline.remember_unknowns or not seen:
        return
    threshold = config.pipeline.unknown_threshold
    track_of = clustering.tracks([s.frame for s in seen], np.stack([s.embedding for s in seen]), threshold)
    best: dict[int, SeenFace] = {}
    for s, track in zip(seen, track_of):
        if track not in best or _area(frames, s) > _area(frames, best[track]):
            best[track] = s
    tracks = sorted(best)
    store = store_for(config, bucket)
    clusters, new = clustering.assign_marking_new(np.stack([best[t].embedding for t in tracks]), store.galleries(),
                                                  threshold)
    remembered = []
    for track, cluster in zip(tracks, clusters):
        s, frame = best[track], frames[best[track].frame]
        remembered.append(UnknownFace(face_id(key, etag, f"s{index}t{track}"), cluster, key, frame["faces"][s.face]["box"],
                                      now_iso(), t=frame["t"], embedding=s.embedding, etag=etag))
    stored = store_faces(store, config.pipeline, remembered, new, "", event_time or now_iso())
    named = {t: cluster for t, cluster in zip(tracks, stored) if cluster is not None}
    for s, track in zip(seen, track_of):
        if track in named:
            frames[s.frame]["faces"][s.face]["cluster"] = named[track]


def unify_video(config: Config, bucket: str, frames: list[dict[str, Any]]) -> None:
    """At a video's merge: segments analysed at the same time each started a cluster for one new
    person; merge the clusters this video's faces carry (Chinese whispers, as the sweep does) and
    rename them in `frames`, so the result names one cluster per person. Idempotent."""
    ids = {face["cluster"] for frame in frames for face in frame["faces"] if face.get("cluster")}
    if not config.pipeline.remember_unknowns or not ids:
        return
    store = store_for(config, bucket)
    if len(ids) > 1:
        regroup(store, config.pipeline, only=ids)
    aliases = store.aliases()
    for frame in frames:
        for face in frame["faces"]:
            if face.get("cluster"):
                face["cluster"] = store.resolve(face["cluster"], aliases)


def _area(frames: list[dict[str, Any]], s: SeenFace) -> int:
    box = frames[s.frame]["faces"][s.face]["box"]
    return int(box["width"]) * int(box["height"])


# --- the store's housekeeping and the commands' queries --------------------------------------


def sweep(deadline_ms: Callable[[], int] | None = None, config: Config | None = None) -> dict[str, Any]:
    """Expire, then re-group what changed since the last run; or, with remembering off, forget
    everything at once (the whole table and every snapshot, in batches: no worker uses the store
    then). Stops RESERVE_MS before the deadline (`complete` false: the next run goes on)."""
    config = config or current_config()
    p = config.pipeline
    if not p.bucket:
        raise ValueError("the sweep needs the stack's bucket (LAMBDAFACE_BUCKET)")
    store = store_for(config, p.bucket)
    time_left = (lambda: deadline_ms() > RESERVE_MS) if deadline_ms else (lambda: True)
    started = iso(clock.now() - CLOCK_SLACK_S)  # the next run re-groups faces seen since (before this scan)
    if not p.remember_unknowns:
        forgotten, complete = store.wipe(time_left)
        gallery_cache.forget_cache()
        report = {"remembering": False, "forgotten": forgotten, "complete": complete}
        metrics.sweep_finished(complete, None)
    else:
        held = held_faces(store)  # read before the scan: a face held here whose item the scan misses was removed since
        faces = list(store.faces())  # one scan: who is due, and when each face was seen
        cutoff = iso(clock.now() - p.unknown_retention_days * 86400)
        aliases, named = store.aliases(), set(store.record_keys(NAMED))  # faces that joined a cluster as it was named

        def due(face: UnknownFace) -> bool:
            return face.seen_at < cutoff or store.resolve(face.cluster, aliases) in named

        expired, complete = forget_faces(store, p, due, time_left, faces)
        merges: dict[str, str] = {}
        orphans = forget_orphans(store, held, faces) if complete else 0
        if complete:
            since = store.regrouped_at()
            new = {f.face_id for f in faces if not due(f) and f.seen_at >= since}
            merges = regroup(store, p, time_left, new if since else None)
            store.set_regrouped_at(started, p.unknown_retention_days)
        kept = faces if not complete else [f for f in faces if not due(f)]  # out of time: some due faces are left
        oldest = clock.now() - min(seen_epoch(f) for f in kept) if kept else 0.0
        report = {"remembering": True, "expired": expired, "orphans": orphans, "merged": len(merges),
                  "complete": complete, "oldest_age_s": round(oldest, 3)}
        metrics.sweep_finished(complete, oldest)
    log.info("unknown faces swept: %s", report)
    return report


def forget_faces(store: UnknownStore, p: PipelineConfig, which: Callable[[UnknownFace], bool],
                 time_left: Callable[[], bool] = lambda: True, faces: list[UnknownFace] | None = None) -> tuple[int, bool]:
    """Forget every remembered face `which` selects (of `faces`, else a scan); (how many, whether all were done)."""
    outcomes: list[Outcome] = []
    complete = True
    for face in store.faces() if faces is None else faces:
        if not which(face):
            continue
        if not time_left():
            complete = False
            break
        outcomes.append(store.delete(face))
    store.settle(p.gallery_compact_every)
    return sum(1 for o in outcomes if o.removed), complete


def held_faces(store: UnknownStore) -> list[dict[str, str]]:
    """{face id: cluster} of each partition's gallery as a worker loads it (a copy: the cached
    galleries change as the store does)."""
    held = []
    for gallery in store.galleries():
        _, people, keys = gallery.live()
        held.append({key: gallery.names[int(pid)] for key, pid in zip(keys, people)})
    return held


def forget_orphans(store: UnknownStore, held: list[dict[str, str]], faces: list[UnknownFace]) -> int:
    """Forget every face a gallery held (`held`, read before the scan `faces`) that has no item any
    more: DynamoDB's TTL removed it (the sweep had not run in time), and its embedding is still in
    the change log, the snapshot and the workers. How many."""
    stored = {face.face_id for face in faces}
    count = 0
    for index, faces_held in enumerate(held):
        orphans = {key: cluster for key, cluster in faces_held.items() if key not in stored}
        if orphans:
            count += store.forget_orphans(index, orphans)
    if count:
        log.warning("forgot %d unknown face(s) whose items had expired before the sweep forgot them", count)
    return count


def forget_records(store: UnknownStore) -> None:
    """Delete the merge and naming records (remembering was switched off)."""
    for partition in (MERGED, NAMED, REGROUPED):
        for item_key in store.record_keys(partition):
            store.delete_record(partition, item_key)


def goes_by(store: UnknownStore, cluster: str) -> str:
    """The name an unknown cluster goes by now: the cluster it was merged into (following every
    merge), or the person that cluster was named; `cluster` itself when neither happened."""
    current = store.resolve(cluster)
    named = store.named(current)
    return str(named["name"]) if named else current


def members(store: UnknownStore, cluster: str, aliases: dict[str, str]) -> set[str]:
    """`cluster` and every retired id that resolves to it."""
    return {cluster} | {old for old in aliases if store.resolve(old, aliases) == cluster}


def forget_cluster(store: UnknownStore, p: PipelineConfig, cluster: str) -> int:
    """Forget every face of `cluster` (and of the clusters merged into it); how many."""
    ids = members(store, cluster, store.aliases())
    people_index.forget_clusters(p, ids)  # where the cluster was seen
    return forget_faces(store, p, lambda f: f.cluster in ids)[0]


def regroup(store: UnknownStore, p: PipelineConfig, time_left: Callable[[], bool] = lambda: True,
            new: set[str] | None = None, only: set[str] | None = None) -> dict[str, str]:
    """Merge clusters that Chinese whispers puts together; {retired id: surviving id}. With `new`
    (face ids remembered since the last run) only the clusters those faces touch are looked at,
    so an hourly run costs (new faces x store) rather than (store x store); with `only`, only
    those clusters. Each merge is recorded before its faces move, so an id resolves at once; out
    of time, the faces not yet moved wait for the next run (which finds the same merge)."""
    everything, clusters, keys = clustering.stacked(store.galleries())
    subset = np.arange(len(clusters))
    if new is not None or only is not None:
        looked_at = set(only or ()) | (clustering.touched(everything, clusters, [i for i, k in enumerate(keys) if k in new],
                                                          p.unknown_threshold) if new is not None else set())
        subset = np.flatnonzero([c in looked_at for c in clusters])
    apart = kept_apart(store, p, clusters, keys)
    merges = clustering.regroup(everything[subset], [clusters[i] for i in subset], p.unknown_threshold, apart=apart)
    for retired, survivor in merges.items():
        store.record_merge(retired, survivor, p.unknown_retention_days)
        for face in store.cluster_faces(retired, embeddings=True):
            if not time_left():
                break
            store.move(face, survivor)
    people_index.merge_clusters(p, merges)  # where each retired cluster was seen: now the survivor's
    store.settle(p.gallery_compact_every)
    if merges:
        log.info("merged %d clusters: %s", len(merges), merges)
    return merges


def kept_apart(store: UnknownStore, p: PipelineConfig, clusters: list[str], keys: list[str]) -> set[frozenset[str]]:
    """Pairs of clusters a regroup must not merge: a face a correction took out of a cluster
    (`not <cluster>`, shared/pipeline/corrections.py) and the cluster that one goes by now."""
    if not p.corrections_table:
        return set()
    cluster_of = dict(zip(keys, clusters))
    records = [r for r in CorrectionsTable(p.corrections_table).apart() if r.get("unknown_face")]
    aliases = store.aliases() if records else {}
    apart = set()
    for r in records:
        mine = cluster_of.get(r["unknown_face"])
        other = store.resolve(r["cluster"], aliases)
        if mine and mine != other:
            apart.add(frozenset((mine, other)))
    return apart


def clusters(store: UnknownStore) -> list[dict[str, Any]]:
    """Each cluster: `cluster`, `faces`, `sources` (distinct keys), `first_seen`, `last_seen`, most faces first."""
    aliases = store.aliases()
    found: dict[str, dict[str, Any]] = {}
    for face in store.faces():
        cluster = store.resolve(face.cluster, aliases)
        entry = found.setdefault(cluster, {"cluster": cluster, "faces": 0, "sources": set(),
                                           "first_seen": face.seen_at, "last_seen": face.seen_at})
        entry["faces"] += 1
        entry["sources"].add(face.source)
        entry["first_seen"] = min(entry["first_seen"], face.seen_at)
        entry["last_seen"] = max(entry["last_seen"], face.seen_at)
    rows = [{**e, "sources": sorted(e["sources"])} for e in found.values()]
    return sorted(rows, key=lambda e: (-e["faces"], e["first_seen"], e["cluster"]))
