"""benchmarks/RESULTS.md from the figures run_all.py gathered (results.json)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import readme_speed

STAGES = ("decode", "detect", "landmarks", "embed")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _usd(value: float) -> str:
    if value < 0.0001:
        return f"${value:.6f}"
    return f"${value:.4f}" if value < 0.1 else f"${value:.2f}"


def _n(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


ENGINE_ROWS = (  # results.json key, label (backend, detection)
    ("chosen_dlib", "dlib", "chosen"),
    ("chosen", "onnx", "chosen"),
    ("full_size_upsample_1_dlib", "dlib", "full"),
    ("full_size_upsample_1", "onnx", "full"),
)


def _engine_rows(r: dict) -> list[tuple[str, str, dict]]:
    e = r["engine"]
    cfg = e["config"]
    detection = {"chosen": f"max side {cfg['detect_max_side']}, upsample below {cfg['upsample_below']} (lambdaface)",
                 "full": "full size, upsample 1 (face_recognition's default)"}
    return [(backend, detection[kind], e[key]) for key, backend, kind in ENGINE_ROWS if key in e]


def engine_section(r: dict) -> str:
    e = r["engine"]
    rows = _engine_rows(r)
    per_image = _table(
        ["networks on", "detection", *(f"{s} ms" for s in STAGES), "total ms", "images/s", "faces"],
        [[b, d, *(_n(m["ms_per_image"][s]) for s in STAGES), _n(m["total_ms_per_image"]), _n(m["images_per_s"], 2),
          str(m["faces"])] for b, d, m in rows],
    )
    per_face = _table(
        ["networks on", "detection", *(f"{s} ms" for s in STAGES)],
        [[b, d, *(_n(m["ms_per_face"][s]) for s in STAGES)] for b, d, m in rows],
    )
    onnx, dlib_ = e["chosen"], e.get("chosen_dlib")
    lines = []
    if dlib_:
        lines.append(f"- The descriptor (embed: 150x150 chip, ResNet): **{_n(onnx['ms_per_face']['embed'])} ms per face on ONNX "
                     f"Runtime**, {_n(dlib_['ms_per_face']['embed'])} ms on dlib "
                     f"({dlib_['ms_per_face']['embed'] / onnx['ms_per_face']['embed']:.1f}x); a whole image "
                     f"{dlib_['total_ms_per_image'] / onnx['total_ms_per_image']:.1f}x faster at the chosen detection.")
    full_dlib = e.get("full_size_upsample_1_dlib")
    if full_dlib:
        lines.append(f"- Against face_recognition's pipeline in the same process (dlib's networks, full-size HOG with one "
                     f"upsampling): {onnx['images_per_s'] / full_dlib['images_per_s']:.1f}x the images per second, "
                     f"{onnx['faces']} faces found vs {full_dlib['faces']}: "
                     f"{full_dlib['ms_per_image']['detect'] / onnx['ms_per_image']['detect']:.1f}x from detecting on a smaller copy, "
                     f"{full_dlib['ms_per_image']['embed'] / max(onnx['ms_per_image']['embed'], 1e-9):.1f}x on the descriptors.")
    agreement = e.get("descriptor_agreement")
    if agreement:
        lines.append(f"- The two backends agree: same boxes on {agreement['images_with_same_boxes']}/{agreement['images']} "
                     f"images; over {agreement['faces']} faces the descriptors differ by at most "
                     f"{agreement['max_abs_difference']:.1e} per component ({agreement['max_distance']:.1e} in distance; "
                     f"the match threshold is 0.6).")
    threads = e["config"].get("ort_threads", 1)
    nl = "\n"
    return f"""## Engine per stage: dlib beside ONNX Runtime

{r['photos']} still photos of `../shared/faces` ({onnx['faces']} faces), in one process, models loaded
beforehand; medians of {r['settings']['repeats']} passes, the four configurations interleaved pass by pass (so
the shared machine's load falls on each alike). *dlib*: `EngineConfig(backend="dlib")`, dlib's own
ResNet; *onnx*: `backend="onnx"` (the default), the same network converted, on ONNX Runtime with
{threads} intra-op thread. Detection here is HOG (dlib's, in both); landmarks (dlib's 5-point model)
and embeddings always use the full-resolution image.

Per image:

{per_image}

Per face (the stage's time divided by the faces found; decode and detect are really per image):

{per_face}

{nl.join(lines)}

Matching one face against 100,000 enrolled faces (vectorised, in memory): {_n(r['match_100k_ms'])} ms.
"""


def mmod_section(r: dict) -> str:
    if "mmod" not in r:
        return ""
    m = r["mmod"]
    rows = []
    for label, x in ((f"{m['stills']['images']} still photos resized to at most {m['side']} px", m["stills"]),
                     (f"{m['frames']['images']} frames of `video/short_hamilton_clip.mp4` ({m['frames']['size']})", m["frames"])):
        rows.append([label, _n(x["dlib_ms_per_image"], 0), _n(x["onnx_ms_per_image"], 0), f"**{x['speedup']:.1f}x**",
                     f"{x['dlib_faces']} / {x['onnx_faces']}", f"{x['images_with_same_boxes']}/{x['images']}"])
    frames = m["frames"]
    batch = ""
    if "batch" in frames:
        batch = (f"\nVideo frames go through the ONNX detector {frames['batch']} at a time (`find_faces_batch`): "
                 f"{_n(frames['onnx_batch_ms_per_image'], 0)} ms per frame that way "
                 f"({frames['batch_speedup']:.1f}x dlib's per-frame time).\n")
    return f"""## MMOD CNN detector: dlib beside ONNX Runtime

dlib's `cnn_face_detection_model_v1` (`models.cnn_detector()`) and the converted network with dlib's
pre- and post-processing on ONNX Runtime (`models.mmod_detector({m['stills']['threads']})`, {m['stills']['threads']} thread),
upsample 0 (as video frames are detected), one right after the other on each image. dlib: one run
per image; ONNX: median of {r['settings']['repeats']}. Milliseconds per image:

{_table(["images", "dlib ms", "onnx ms", "speedup", "faces dlib / onnx", "images with identical boxes"], rows)}
{batch}"""


def cold_section(r: dict) -> str:
    c = r["cold_start"]
    rows = [
        ["interpreter start", _n(c["interpreter"], 2)],
        ["imports (`handlers.recognize`: boto3, Powertools, numpy, dlib, onnxruntime, the engine)", _n(c["imports"], 2)],
        ["model loading (HOG detector, 5-point landmarks, the ResNet's ONNX Runtime session)", _n(c["models"], 2)],
        ["first image (`people/obama/obama.jpg`)", _n(c["first_image"], 2)],
        ["**new process to first result**", f"**{_n(c['seconds_to_first_result'], 2)}**"],
    ]
    rss = [w["worker_peak_rss_mb"] for w in r["local"] + ([r["local_no_annotation"]] if "local_no_annotation" in r else [])]
    return f"""## Cold start and peak memory

A new Python process (default settings: HOG, networks on ONNX Runtime) imports the recognize handler, loads the models and analyses one photo
(medians of {c['runs']} processes). Seconds:

{_table(["phase", "seconds"], rows)}

Peak memory (VmHWM) of that process after analysing every photo: **{_n(c['peak_rss_mb'], 0)} MiB**;
of a recognize worker of the local stack after its bursts (boto3 clients, gallery cache included):
**{_n(max(rss), 0)} MiB**. The template gives the functions {r['cost']['model']['memory_mb']} MB.
"""


def fr_section(r: dict) -> str:
    f = r["face_recognition"]
    rows = []
    for tool, label in (("lambdaface", "`lambdaface compare KNOWN IMAGES...`"),
                        ("face_recognition", "`face_recognition KNOWN_DIR IMAGE_DIR` (face_recognition 1.3.0)")):
        t = f[tool]
        rows.append([label, _n(t["seconds"], 1), _n(t["images_per_s"], 2), str(t["faces"]),
                     f"{t['images_with_expected_faces']}/{f['images']}", str(t["matches_with_known"])])
    differ = [p for p, n in f["lambdaface"]["per_image_faces"].items() if f["face_recognition"]["per_image_faces"].get(p) != n]
    return f"""## Against the face_recognition library

The same {f['images']} photos and one known face (`seed/john0.jpg`), each tool as a fresh process
(start-up and model loading included), one after the other in the same run, medians of {f['repeats']}.
Both use dlib's HOG detector and dlib's ResNet with one jitter (lambdaface runs the ResNet on ONNX
Runtime); face_recognition downsizes images larger than 1600 px and detects with one upsampling,
lambdaface detects on a copy at most {r['engine']['config']['detect_max_side']} px (upsampled once below {r['engine']['config']['upsample_below']} px).
Each figure includes the interpreter's start and model loading ({_n(r['cold_start']['seconds_to_first_result'], 1)} s for lambdaface's, see above).

{_table(["command", "seconds", "images/s", "faces found", f"images with the labelled count ({f['expected_faces']} faces)", "matches with john0"], rows)}

**lambdaface processes {_n(f['ratio_images_per_s'], 2)}x the images per second of face_recognition**;
images where the two found a different number of faces: {', '.join(differ) if differ else 'none'}.
Without start-up (in one process, the engine table above) the ratio is
{r['engine']['chosen']['images_per_s'] / r['engine']['full_size_upsample_1_dlib']['images_per_s']:.1f}x; the start-up of a fresh
process weighs more on 27 photos than it would on a long run.
"""


def local_section(r: dict) -> str:
    rows = []
    stacks = r["local"] + ([r["local_no_annotation"]] if "local_no_annotation" in r else [])
    for w in stacks:
        m = w["median"]
        annotated = "no" if w.get("env", {}).get("LAMBDAFACE_ANNOTATE") == "false" else "yes"
        rows.append([str(w["workers"]), annotated, _n(m["images_per_s"], 2), _n(m["latency_p50_s"]), _n(m["latency_p95_s"]),
                     _n(m["engine_ms_per_image"], 0), _n(m["handler_ms_per_image"], 0), _n(m["worker_ms_per_image"], 0),
                     _n(m["overhead_ms_per_image"], 0), f"{int(m['lost'])} / {int(m['duplicated'])}",
                     f"{int(m['left_in_queue'])} / {int(m['dead_letters'])}"])
    idle = [[str(w["workers"]), "no" if w.get("env", {}).get("LAMBDAFACE_ANNOTATE") == "false" else "yes",
             _n(w["idle"]["latency_s"], 2), _n(w["idle"]["engine_ms"], 0), _n(w["idle"]["overhead_ms"], 0)]
            for w in stacks]
    stages = r["local"][0]["median"]
    first = r["local"][0]["runs"][0]["pipeline_stage_ms"]
    runs = r["settings"]["burst_runs"]
    return f"""## Local stack, end to end

`lambdaface local` (moto's S3, SQS and DynamoDB over HTTP on loopback, handler workers polling
SQS like Lambda's event source) with a fresh state directory; the {r['local'][0]['enrolled']} photos of
`people/` enrolled first, a few queries to warm the workers, then a burst of
{int(stages['images'])} query uploads cycling the {r['photos']} photos under distinct keys, sent by one
client as fast as it can ({_n(stages['upload_s'], 1)} s for all). {'One burst per worker count (median of 1)' if runs == 1 else f'Medians of {runs} bursts'}.
Upload-to-result = the result's `finished_at` minus the moment its PUT returned.
*N recognize workers* is `lambdaface local --workers N`: N worker processes per function.
*Annotated JPEG* no: `LAMBDAFACE_ANNOTATE=false` (template parameter `AnnotatedImages`), so a job
draws no boxes and makes one S3 PUT (the result JSON) instead of two.

{_table(["recognize workers", "annotated JPEG", "images/s", "p50 s", "p95 s", "engine ms/image", "handler ms/image", "worker ms/image", "overhead ms/image", "lost / duplicated", "left in queue / DLQ"], rows)}

- *engine*: decode + detect and embed + match, from each result's `timings_ms`; *handler*: the
  job's whole `timings_ms.total` (adds S3 download {_n(first['download'], 0)} ms, gallery check
  {_n(first['load_gallery'], 0)} ms, annotation {_n(first['annotate'], 0)} ms, result upload {_n(first['upload'], 0)} ms:
  means of the first burst with one worker).
- *worker ms/image* = workers x burst seconds / images: what one image costs a worker in the
  burst; *overhead* = that minus the engine: S3, SQS and DynamoDB calls, JSON, annotation, polling
  (the local worker also reads each result back for its job line), and on this
  {r['machine']['cores']}-core machine the moto server competing with the workers for the same cores.
- *lost*: uploads without a result document; *duplicated*: extra job lines from the stack, job
  records with more than one attempt, or more than one record per key. Both must be 0.

The burst's latency is mostly queueing: p50 is about half the time the backlog takes to drain.
One query uploaded into an idle stack (median of {r['local'][0]['idle']['samples']}):

{_table(["recognize workers", "annotated JPEG", "upload to result s", "engine ms", "pipeline overhead ms"], idle)}

![throughput against workers, and the latency distribution of the bursts](results.png)
"""


def _cost_variants(c: dict) -> list[tuple[str, dict, dict]]:
    """(label, model, per-1000 lines) with the annotated JPEG, then without when measured."""
    out = [("with annotated JPEG", c["model"], c["per_1000_images"])]
    if "without_annotation" in c:
        out.append(("without annotated JPEG", c["without_annotation"]["model"], c["without_annotation"]["per_1000_images"]))
    return out


def cost_section(r: dict) -> str:
    c = r["cost"]
    variants = _cost_variants(c)
    m = c["model"]
    p = m["prices"]
    q = m["requests"]
    gb = m["memory_mb"] / 1024

    def both(line: str) -> list[str]:
        return [_usd(lines[line]) for _, _, lines in variants]

    def bold(text: str) -> str:
        return f"**{text}**"

    s3_puts = " / ".join(f"{v[1]['requests']['s3_put']:g}" for v in variants)
    seconds = " / ".join(_n(v[1]["seconds_per_image"], 3) for v in variants)
    rows = [
        ["Lambda compute", f"{seconds} s x {gb:g} GB x ${p['lambda_gb_second']:.10f}/GB-s", *both("lambda_compute")],
        ["Lambda requests", f"{q['lambda_invocations']:g} invocation/image x ${p['lambda_request'] * 1e6:.2f}/M", *both("lambda_requests")],
        ["SQS", f"{q['sqs']:g} requests/image x ${p['sqs_request'] * 1e6:.2f}/M", *both("sqs")],
        ["S3", f"{s3_puts} PUT x ${p['s3_put'] * 1000:g}/1000 + {q['s3_get']:g} GET x ${p['s3_get'] * 1000:g}/1000", *both("s3")],
        ["DynamoDB on demand", f"{q['dynamodb_writes']:g} writes x ${p['dynamodb_write_unit'] * 1e6:g}/M + {q['dynamodb_reads']:g} read x ${p['dynamodb_read_unit'] * 1e6:g}/M", *both("dynamodb")],
        ["**lambdaface total**", "", *(bold(_usd(v[2]["total"])) for v in variants)],
        ["Amazon Rekognition, SearchFacesByImage (largest face only)", f"${p['rekognition_image'] * 1000:.2f}/1000 images",
         *[_usd(c["rekognition_per_1000_images"]["largest_face_only"])] * len(variants)],
        ["Amazon Rekognition, DetectFaces + a search per face",
         f"{1 + c['faces_per_image']:.2f} calls/image (these photos: {c['faces_per_image']:.2f} faces/image)",
         *[_usd(c["rekognition_per_1000_images"]["every_face"])] * len(variants)],
    ]
    rekognition = c["rekognition_per_1000_images"]["largest_face_only"]
    ratios = " and ".join(f"**{rekognition / v[2]['total']:.0f}x** ({v[0]})" for v in variants)
    header = ["line", "how (with / without)" if len(variants) > 1 else "how",
              *(f"per 1000 images, {v[0]}" for v in variants)]
    compute_share = variants[-1][2]["lambda_compute"] / variants[-1][2]["total"]
    return f"""## Cost per 1000 images, with and without the annotated JPEG

Seconds per image = the median handler time per image measured above with one worker, with the
annotated JPEG ({_n(variants[0][1]['seconds_per_image'] * 1000, 0)} ms) and without it
({_n(variants[-1][1]['seconds_per_image'] * 1000, 0)} ms: no drawing, no JPEG encoding, no second PUT), taken as
Lambda's billed duration; memory = `RecognizeMemorySize` in template.yaml ({m['memory_mb']} MB). This assumes a
Lambda vCPU at that size is as fast as one core of this machine (not measured here: below 1769 MB a
function gets a fraction of a vCPU and runs proportionally longer, so the GB-seconds stay about the
same; the engine uses one thread, so memory above 1769 MB buys nothing). Prices: {c['prices_as_of']},
us-east-1, x86, no free tier.

{_table(header, rows)}

At list price Rekognition costs about {ratios} as much per image as this pipeline (first tier;
Rekognition also bills $0.01 per 1000 stored faces a month, and the gallery here costs
DynamoDB storage instead). Without the JPEG, compute is {compute_share:.0%} of the total: the rest is
per-request prices that no engine speed-up changes (S3 PUT alone: {_usd(variants[-1][2]['s3'])}).
{_batched(c)}Not included on either side: the upload of the photo to S3 and its
storage, data transfer, CloudWatch Logs, the pollers' empty SQS long polls while idle (about a
cent a day for both queues at 5 pollers each). A cold start's init phase ({_n(r['cold_start']['seconds_to_first_result'], 1)} s) costs
{_usd(c['cold_start_usd'])} each.
"""


def _batched(c: dict) -> str:
    """The totals when every invocation gets a full batch (the table assumes one image per invocation)."""
    b = c.get("full_batches")
    if not b:
        return ""
    return (f"The table is the worst case, one image per invocation. With full batches of {b['batch_size']} "
            f"(`RecognizeBatchSize`), an invocation, a ReceiveMessage and a DeleteMessageBatch serve {b['batch_size']} "
            f"images: {_usd(b['with_annotation']['total'])} with the annotated JPEG, "
            f"**{_usd(b['without_annotation']['total'])} without** (same measured seconds per image).\n")


def video_section(r: dict) -> str:
    if "video" not in r:
        return ""
    v = r["video"]
    rows = []
    for m in v["measured"]:
        run = m["runs"][-1]
        rows.append([str(m["video_workers"]), _n(run["wall_s"], 1), f"**{_n(run['wall_per_video_s'], 2)}**",
                     str(run["segments"]), str(run["frames_sampled"]), _n(run["s_per_frame"], 2),
                     ", ".join(run["people"])])
    speedups = ", ".join(f"{w} workers: {s:.2f}x" for w, s in v["speedup"].items())
    runs = len(v["measured"][0]["runs"])
    return f"""## Video, fanned out across segments

The 9.2 s clip (`video/short_hamilton_clip.mp4`, 640x360) on the local stack after enrolling
lin1.png and alex3.png, with `--workers N` video workers, {v['segment_s']} s segments, the MMOD CNN on
ONNX Runtime (one thread, frames at most {v.get('detect_max_side', 640)} px, {_frame_batch()} frames per batch) on {v['sample_fps']} sampled
frames per second. Wall seconds from upload to the merged result; the clip is uploaded {runs} time(s)
per stack and the last upload counts (the first one also warms the workers).

{_table(["video workers", "wall s", "wall s per video s", "segments", "frames", "s per frame (sum of segments)", "people"], rows)}

Speedup over 1 worker: {speedups}. Segments are uneven (the last is short), which caps the speedup
of a short clip (4 segments of 9, 9, 9 and 1 frames split at best 18 + 10 over 2 workers: 1.56x), and
on 2 cores the moto server and the other functions' workers share the CPU with the video workers.
"""


def _frame_batch() -> int:
    try:
        from shared.engine.video import FRAME_BATCH
    except ImportError:
        return 4
    return FRAME_BATCH


def targets(r: dict) -> list[list[str]]:
    """[target, measured, met] for each figure the issue sets a target for."""
    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = []
    e = r["engine"]
    embed = e["chosen"]["ms_per_face"]["embed"]
    out.append(["descriptor at most 10 ms per face", f"{embed:.1f} ms per face (dlib: "
                f"{_n(e['chosen_dlib']['ms_per_face']['embed'])} ms)" if "chosen_dlib" in e else f"{embed:.1f} ms", met(embed <= 10)])
    if "mmod" in r:
        st, fr = r["mmod"]["stills"], r["mmod"]["frames"]
        out.append(["MMOD at least 10x faster than dlib's",
                    f"{st['speedup']:.1f}x on stills, {fr['speedup']:.1f}x on frames",
                    met(min(st["speedup"], fr["speedup"]) >= 10)])
        same = st["images_with_same_boxes"] == st["images"] and fr["images_with_same_boxes"] == fr["images"]
        out.append(["MMOD: the same faces as dlib's", f"identical boxes on {st['images_with_same_boxes'] + fr['images_with_same_boxes']}"
                    f"/{st['images'] + fr['images']} images", met(same)])
    if "face_recognition" in r:
        f = r["face_recognition"]
        ratio = f["ratio_images_per_s"]
        differ = sum(f["face_recognition"]["per_image_faces"].get(p) != n for p, n in f["lambdaface"]["per_image_faces"].items())
        out.append(["images/s against the `face_recognition` CLI at least 8x (goal 10x)",
                    f"{ratio:.2f}x (fresh processes, start-up included)",
                    met(ratio >= 8) + ("" if ratio < 8 else (", goal met" if ratio >= 10 else ", goal 10x not met"))])
        out.append(["... with the same faces found", f"{f['lambdaface']['faces']} vs {f['face_recognition']['faces']} faces, "
                    f"{differ} image(s) differ", met(differ == 0)])
    if "video" in r:
        per = {str(k): v for k, v in r["video"]["wall_per_video_s"].items()}
        one = per.get("1")
        if one is not None:
            out.append(["9 s clip, 1 video worker: at most 1.5 wall s per video s",
                        ", ".join(f"{v:.2f} with {w} worker{'s' if w != '1' else ''}" for w, v in per.items()), met(one <= 1.5)])
    c = r["cost"]
    variants = _cost_variants(c)
    total = variants[-1][2]["total"]
    rekognition = c["rekognition_per_1000_images"]["largest_face_only"]
    out.append(["cost per 1000 images at most $0.010 without the annotated JPEG (100x below Rekognition)",
                " / ".join(f"{_usd(v[2]['total'])} {v[0]}" for v in variants) + f"; {rekognition / total:.0f}x below Rekognition"
                + (f" (full batches of {c['full_batches']['batch_size']}: {_usd(c['full_batches']['without_annotation']['total'])} without)"
                   if "full_batches" in c else ""),
                met(total <= 0.010) + (" (one image per invocation)" if "full_batches" in c else "")])
    out.append(["cold start; peak memory (no target)",
                f"{_n(r['cold_start']['seconds_to_first_result'], 2)} s to the first result; "
                f"{_n(r['cold_start']['peak_rss_mb'], 0)} MiB", "measured"])
    return out


def targets_section(r: dict, extra: list[list[str]] | None = None) -> str:
    return f"""## The issue's targets

{_table(["target", "this run", "verdict"], targets(r) + (extra or []))}
"""


# --- benchmarks run on their own (make bench-gallery, bench-long-video, bench-unknowns): each
# writes its JSON beside this file, and RESULTS.md renders whichever are there (not re-measured).

HERE = Path(__file__).resolve().parent


def _load(directory: Path, name: str):
    path = directory / name
    return json.loads(path.read_text()) if path.exists() else None


def forget_burst_section(rows: list) -> str:
    """The forget bursts of `make bench-gallery` (gallery_forget_burst.py), if measured."""
    if not rows:
        return ""
    rows = sorted(rows, key=lambda r: (r["faces"], r["design"] != "coalesced"))
    table = _table(
        ["faces", "design", "forgets", "snapshot rewrites", "S3 bytes written", "forgets took s", "every snapshot clean after s"],
        [[f"{r['faces']:,}", r["design"] + ("" if r.get("measured", True) else " (computed)"), str(r["burst"]),
          str(r["snapshot_rewrites"]), f"{r['s3_bytes_written'] / 1e6:,.1f} MB",
          _n(r["forgets_s"], 1) if "forgets_s" in r else "-",
          (_n(r["clean_s"], 1) + (f" (purge delay {r['purge_delay_s']} s)" if r.get("purge_delay_s") else "")) if "clean_s" in r else "-"]
         for r in rows],
    )
    return f"""
### A burst of forgets

A burst of {rows[0]['burst']} forgets (one after the other, one enroll worker), then the purge, on the
local stack (moto in its own process). *coalesced*: the design in use (each forget writes its
result at once; one delayed purge message, `LAMBDAFACE_GALLERY_PURGE_DELAY_S`, publishes one
snapshot without the faces); *each*: the design before (each forget of a face in the snapshot
rewrote the whole snapshot before its result), measured, or computed where marked. *clean after*:
from the first forget until no object under `gallery/snapshots/` lists a forgotten image.

{table}
"""


def gallery_section(rows: list | None) -> str:
    if not rows:
        return ""
    bursts = [r for r in rows if r.get("kind") == "forget_burst"]
    rows = [r for r in rows if r.get("kind") != "forget_burst"]
    table = _table(
        ["faces", "design", "cold load s", "change applied ms", "added to the next recognition ms", "peak RSS MiB",
         "match ms per face", "read units per job", "write units per change"],
        [[f"{r['faces']:,}", r["design"], _n(r["cold_load_s"], 2), _n(r["change_applied_ms"], 1),
          _n(r["recognize_after_enroll_ms"], 1), _n(r["peak_rss_mb"], 0), _n(r["match_ms_per_face"], 2),
          f"{r['read_units_per_job']:g}" + (f" (+{r['read_units_per_rescan']:,} per rescan)" if "read_units_per_rescan" in r else ""),
          f"{r['write_units_per_change']:g}"] for r in rows],
    )
    return f"""## The gallery at scale

`make bench-gallery` (benchmarks/bench_gallery.py; figures from gallery_results.json, not re-run by
`make bench`): the local stack (moto's S3 and DynamoDB) seeded with synthetic faces through
`gallery_cache.import_faces`, then a fresh worker process. *snapshot+log*: the design in use (a
snapshot from S3 loaded once, then only the change log since); *scan (before)*: the design it
replaced (a strongly consistent scan of the table, rebuilt in Python, on every change), measured up to
10^5 faces. *change applied*: a warm worker's load after one enrollment; *added to the next
recognition*: what an enrollment adds to the next recognition's time. Capacity units are computed
from item sizes (moto's are not DynamoDB's).

{table}
{forget_burst_section(bursts)}"""


def long_video_section(v: dict | None) -> str:
    if not v:
        return ""
    s, size = v["settings"], v["video_bytes"]
    rows = []
    for run in v["runs"]:
        b, c = run["bytes_per_segment"], run["cost_per_video_hour_usd"]
        people = ", ".join(f"{a['person']} {' + '.join(f'{x:g}-{y:g} s' for x, y in a['intervals'])}" for a in run["appearances"])
        rows.append([str(run["video_workers"]), _n(run["wall_s"], 1), f"**{run['wall_per_video_s']:.3f}**", str(run["segments"]),
                     str(run["frames_sampled"]), _n(run["segment_s_sum"], 1), f"{b['mean'] / 1e6:.1f} MB ({b['mean'] / size:.1%})",
                     _n(run["requests_per_segment"], 1), f"${c['lambda']:.3f}", f"${c['rekognition_video']:.2f}", people])
    return f"""## A long video

`make bench-long-video` (benchmarks/bench_long_video.py; figures from long_video_results.json, not
re-run by `make bench`): a composed {s['minutes']:g}-minute {s['size'][0]}x{s['size'][1]} video at {s['fps']:g} fps
({size / 1e6:.1f} MB; obama and biden on screen at known times) recognised once on a fresh local stack
per worker count, segments of {s['LAMBDAFACE_SEGMENT_S']} s, {s['LAMBDAFACE_SAMPLE_FPS']} sampled frame(s) per second;
{v['cores']} cores, load average {v['load_average']:.1f} at the end. *S3 per segment*: what each segment
read with its ranged GETs (index included), mean, and its share of the file. Cost per video hour:
the segments' measured seconds at `VideoMemorySize` ({s['video_memory_mb']} MB) plus requests, beside
Rekognition Video's list price ({v['prices']}).

{_table(["video workers", "wall s", "wall s per video s", "segments", "frames", "s in segments (sum)", "S3 per segment",
         "GETs per segment", "Lambda per video hour", "Rekognition Video per hour", "people (intervals)"], rows)}
"""


def unknowns_section(rows: list | None) -> str:
    if not rows:
        return ""
    main = []
    for r in rows:
        s, a, t = r["remember_steps_ms"], r["assign_ms"], r["remember_total_ms"]
        main.append([f"{r['faces']:,}", _n(r["cold_load_s"], 2), _n(r["peak_rss_mb_after_load"], 0),
                     f"**{a['median']:.2f}** / {a['p95']:.2f}", r["assign_right"], _n(s["catch_up"], 1),
                     _n(s["remember"], 1), _n(s["settle"], 1), f"**{t['median']:.1f}** / {t['p95']:.1f}",
                     _n(r["remember_photo_ms"]["median"], 1), _n(r["compaction_s"], 2),
                     f"{r['units_per_face']['write']:g} + {r['units_per_face']['write_amortized_compaction']:g} / "
                     f"{r['units_per_face']['read']:g}"])
    regroup = []
    for r in rows:
        g, d = r["regroup"]["seeded"], r["regroup"]["duplicates"]
        regroup.append([f"{r['faces']:,}", f"{g['edges']:,}", _n(g["seconds"]["edges"], 2), _n(g["seconds"]["chinese_whispers"], 2),
                        f"**{g['seconds']['total']:.2f}**", f"{g['merges']} ({g['wrong_merges']} wrong)",
                        f"{d['faces_moved']:,} faces, {d['duplicate_clusters']:,} clusters", _n(d["seconds"]["total"], 2),
                        f"{d['reunited']:,}/{d['duplicate_clusters']:,}", str(d["wrong_merges"]),
                        _hourly(r["regroup"].get("hourly")),
                        f"{_n(r.get('peak_rss_mb_before_regroup'), 0)} -> {_n(r['peak_rss_mb_after_regroup'], 0)}"])
    r0 = rows[-1]
    dist = r0["distances"]

    def span(x: list) -> str:
        return f"{x[0]:.2f}-{x[2]:.2f} (median {x[1]:.2f})"

    calls = ", ".join(f"{v:g} {k.split('.', 1)[1]}" for k, v in r0["remember_calls_per_face"].items() if v >= 0.5)
    return f"""## Unknown faces: grouping cost

`make bench-unknowns` (benchmarks/bench_unknowns.py; figures from unknowns_results.json, not re-run
by `make bench`), {r0['cores']} cores, load average {r0['load_average']:.1f} at the end. moto's server in-process
(ThreadedMotoServer), a fresh table and bucket per size, seeded through `gallery_cache.import_faces`
on the UnknownStore's table, in its {r0.get('partitions', 1)} partitions (change logs side by side; {r0['faces'] // r0['identities']} faces per synthetic identity; the snapshot, counter and
shards of each{'' if r0['items_seeded'] else ', without the per-face items: see below'}); then a fresh process measures. Synthetic
faces are spread like dlib's descriptors; measured at {r0['faces']:,}: same identity {span(dist['same_identity'])}, nearest
other identity {span(dist['nearest_other_identity'])}, typical other identity {dist['typical_other_identity']:.2f}; threshold
{r0['threshold']}. *assign*: `clustering.assign` of one new face against the loaded store, median / p95 of
{int(r0['assign_right'].split('/')[1])} faces (half near a remembered identity, half new), *right*: got their identity's
cluster or a new one. *Per remembered face* is what `remember_photo` pays, step by step: the catch-up (the
next `store.galleries()`: one BatchGetItem of a counter shard of every partition, then the previous face's change), assign, `store.remember` (one
TransactWriteItems), `store.settle`; *remember_photo*: the function itself, as a cross-check.
*Compaction*: the snapshot of one partition (1/{r0.get('partitions', 1)} of the store) that every {r0['compact_every']}th change of that partition writes.
Per face: {calls}; DynamoDB would bill {r0['units_per_face']['write']:g} write units (the
transaction: 2 per KB of each item, from the sizes of the items written: {', '.join(str(b) for b in r0['remember_item_bytes'])} bytes)
plus about 1 for the log entry's later trim, and {r0['units_per_face']['read']:g} read units.

{_table(["remembered faces", "cold load s", "peak RSS MiB", "assign ms p50 / p95", "right", "catch-up ms", "remember ms",
         "settle ms", "per remembered face ms p50 / p95", "remember_photo ms", "compaction s", "WCU / RCU per face"], main)}

moto's times are not DynamoDB's: a transaction on moto deep-copies the table once per item it writes,
so its cost grows with the table. {_probe(r0)}
Without the per-face items (as here) the table holds only the bookkeeping and what this run adds (3 items a face), and still `remember` went from {_n(r0['remember_ms_first_last'][0], 0)} ms (first fifth of the
faces) to {_n(r0['remember_ms_first_last'][1], 0)} ms (last fifth) at {r0['faces']:,}: most of the remember column is moto. Nothing
measured reads the per-face items (the sweep's merges and the commands do).

Re-grouping (`clustering.regroup`: the pairs of faces within the threshold, then
dlib's Chinese whispers; merges only), on the seeded clusters (all right), and with a share of the
faces moved (in memory) into a wrong duplicate cluster of their own identity:

{_table(["remembered faces", "edges", "edges s", "Chinese whispers s", "regroup s", "merges (seeded)", "moved to duplicates",
         "regroup s", "duplicates reunited", "wrong merges", "hourly: new faces, faces looked at, s",
         "peak RSS MiB before -> after"], regroup)}

`edges` compares every pair of faces (N^2/2 distances, {clustering_block()} rows a block) and keeps each face's 16
nearest later faces within the threshold (so one person seen thousands of times costs linear memory); its time
grows with the square of the store ({r0['regroup']['seeded']['seconds']['edges']:.0f} s at {r0['faces']:,} here). That full pass is
what `lambdaface unknowns regroup` does. The hourly sweep looks only at the clusters that the faces
remembered since its last run touch (*hourly*: 1% of the faces new, `clustering.touched`, then the
regroup of those clusters): new x N distances instead of N^2/2.

Not measured: many recognitions writing at once. moto's TransactWriteItems is not thread-safe (concurrent
ones fail inside moto with "dictionary changed size during iteration" and are retried by the SDK), so
lost races for a partition's counter measured on it would be moto's; the 8 partitions are sized from
the gallery's figure for one counter (docs/ARCHITECTURE.md, Unknown faces).
"""


def _hourly(h: dict | None) -> str:
    if not h:
        return "-"
    return f"{h['new_faces']:,}, {h['faces_looked_at']:,}, **{h['seconds']['total']:.2f}**"


def _probe(r: dict) -> str:
    p = r.get("moto_with_items")
    if not p:
        return ""
    return f"With the per-face items of {p['faces']:,} faces seeded, one remembered face costs moto {p['remember_ms']:.0f} ms."


def clustering_block() -> int:
    try:
        from shared.engine.clustering import EDGE_BLOCK
    except ImportError:
        return 256
    return EDGE_BLOCK


def unknowns_targets(rows: list | None) -> list[list[str]]:
    """The issue's target for the unknown faces: grouping a new face costs milliseconds at 10^5."""
    big = [r for r in rows or [] if r["faces"] >= 100_000]
    if not big:
        return []
    r = big[0]
    a, t, s = r["assign_ms"], r["remember_total_ms"], r["remember_steps_ms"]
    return [[f"grouping a new unknown face costs milliseconds against {r['faces']:,} remembered faces (`make bench-unknowns`)",
             f"assign {a['median']:.2f} ms (p95 {a['p95']:.2f}); a whole remembered face {t['median']:.0f} ms on moto "
             f"(catch-up {s['catch_up']:.1f}, transaction {s['remember']:.1f}); re-grouping all "
             f"{r['regroup']['seeded']['seconds']['total']:.0f} s, hourly (1% new) {r['regroup'].get('hourly', {}).get('seconds', {}).get('total', 0):.1f} s", "met" if a["median"] < 10 and t["median"] < 1000 else "**not met**"]]


def people_index_section(rows: list | None) -> str:
    """`make bench-people-index` (benchmarks/bench_people_index.py), if measured."""
    if not rows:
        return ""
    finds = [[f"{r['index_entries']:,}", f"{r['person_entries']:,}", str(r["limit"]),
              f"**{r['first_page_ms']['p50']:.0f}** / {r['first_page_ms']['p95']:.0f} ({r['first_page_ms']['n']})",
              f"{r['since_page_ms']['p50']:.0f} / {r['since_page_ms']['p95']:.0f}",
              f"{r['all_pages_ms']['p50'] / 1000:.1f} s ({r['all_pages_ms']['pages']} x {r['all_pages_ms']['page_size']})"
              if r["all_pages_ms"].get("p50") is not None else "-",
              str(r["first_page_rcu"]), f"{r['person_write_s']:.1f} s / {r['other_load_s']:.0f} s", f"{r['peak_rss_mb']:,}"]
             for r in rows]
    r0 = rows[-1]
    units = [[u["result"], str(u["items_written"]), str(u["wcu"]), _n(u["ms_on_moto"], 1)] for u in r0["write_units"]]
    return f"""## Person index: `lambdaface find`

`make bench-people-index` (benchmarks/bench_people_index.py; figures from people_index_results.json,
not re-run by `make bench`), {r0['cores']} cores, load average {r0['load_average']:.1f} at the end, {r0['date']}.
moto's server in-process, the template's `PeopleIndexTable`; the person measured has their entries
written through the adapter over HTTP (BatchWriteItem), the rest of the index (1,000 other people)
is loaded straight into moto's backend (no HTTP). `find` is `people_index.find` over HTTP, newest
first, strongly consistent. **moto's Query reads every item of the table to pick the partition's**,
so its time grows with the whole index; DynamoDB's reads only the page (the RCU column: 1 per 4 KB
read, strongly consistent), whatever the index holds.

{_table(["index entries", "person's entries", "page", "first page ms p50 / p95 (n)", "`--since` page ms p50 / p95",
         "every page", "RCU a page", "load (person HTTP / rest backend)", "peak RSS MB"], finds)}

Write units per result (`people_index.record`, the call the recognize and video functions make;
WCU: 1 per started KB of each item put or deleted, manifest writes included):

{_table(["result", "items written", "WCU", "ms on moto"], units)}
"""


def sync_api_targets(r: dict | None) -> list[list[str]]:
    """The synchronous API's row of the targets table (`make bench-sync-api`), if measured."""
    if not r:
        return []
    over, lat, eng = r["overhead_ms"], r["latency_ms"], r["engine_in_worker_ms"]
    return [["the synchronous API's overhead above the engine under 30 ms at p50, one warm worker (`make bench-sync-api`)",
             f"{over['p50']:.1f} ms (p95 {over['p95']:.1f}): {lat['p50']:.1f} ms a call, the engine {eng['p50']:.1f} ms",
             "met" if over["p50"] < 30 else "**not met**"]]


def sync_api_section(r: dict | None) -> str:
    """`make bench-sync-api` (benchmarks/bench_sync_api.py), if measured."""
    if not r:
        return ""
    lat, eng, over, here, up = (r["latency_ms"], r["engine_in_worker_ms"], r["overhead_ms"], r["engine_here_ms"],
                                r["upload_to_result_ms"])
    rows = [["through the API, client to client", f"**{lat['p50']:.1f}**", f"{lat['p95']:.1f}", str(lat["n"])],
            ["the engine in the API worker (decode, detect_embed, match)", f"{eng['p50']:.1f}", f"{eng['p95']:.1f}", str(eng["n"])],
            ["the engine in the benchmark's process", f"{here['p50']:.1f}", f"{here['p95']:.1f}", str(here["n"])],
            ["the API's overhead (each call's latency minus its engine time)", f"**{over['p50']:.1f}**", f"{over['p95']:.1f}", str(over["n"])],
            *([["... of which the gallery's freshness check (GetItem, moto)", f"{r['gallery_check_ms']['p50']:.1f}",
                f"{r['gallery_check_ms']['p95']:.1f}", str(r["gallery_check_ms"]["n"])]] if "gallery_check_ms" in r else []),
            ["upload to result through S3 (one at a time)", f"{up['p50']:.1f}", f"{up['p95']:.1f}", str(up["n"])]]
    speed = [[workers, str(t["clients"]), f"{t['per_s']:.2f}", f"{t['calls']} in {t['seconds']} s", str(t["retries"])]
             for workers, t in sorted(r["throughput"].items())]
    verdict = "met" if over["p50"] < 30 else "**not met**"
    return f"""## The synchronous API: an answer in one call

`make bench-sync-api` (benchmarks/bench_sync_api.py; figures from sync_api_results.json, not re-run
by `make bench`), {r['cores']} cores, load average {r['load_average']:.1f} at the end, {r['date']}.
`lambdaface local` with one warm API worker, john0 enrolled; the photo is `{r['photo']}` (one face),
sent as `lambdaface recognize --sync` sends it (SigV4, a kept-open connection). The overhead holds
HTTP, the guard, the event's base64 and pipe to the worker, and the gallery's freshness check (one
GetItem of a counter shard on moto) at every call. Target: overhead under 30 ms at p50: {verdict}.
The API worker's peak memory: {r.get('api_worker_peak_rss_mb', '-')} MiB.

{_table(["one-face photo", "ms p50", "ms p95", "n"], rows)}

Throughput, the same photo, callers in a loop (a 429 is retried by the client):

{_table(["API workers", "callers", "calls/s", "calls", "429 retries"], speed)}
"""


def render(r: dict, others: Path = HERE) -> str:
    m = r["machine"]
    return f"""# Benchmarks

Made by `make bench` (benchmarks/run_all.py) on {m['date']}: {m['cores']} cores ({m['cpu']}),
{m['memory_gb']} GB, Python {m['python']}, dlib {m['dlib']}{', onnxruntime ' + m['onnxruntime'] if m.get('onnxruntime') else ''}; load average {m['load_average']:.1f} when it started{f", {m['load_average_end']:.1f} when it ended" if 'load_average_end' in m else ''}
(the machine is shared, so figures are noisy: compare figures of the same table, taken side by side).
It took {r['duration_s'] / 60:.1f} minutes. Raw figures: results.json.
No test asserts a time; these figures are measurements, not guarantees.

{targets_section(r, unknowns_targets(_load(others, "unknowns_results.json")) + sync_api_targets(_load(others, "sync_api_results.json")))}
{engine_section(r)}
{mmod_section(r)}
{cold_section(r)}
{fr_section(r)}
{local_section(r)}
{video_section(r)}
{cost_section(r)}
{gallery_section(_load(others, "gallery_results.json"))}
{long_video_section(_load(others, "long_video_results.json"))}
{unknowns_section(_load(others, "unknowns_results.json"))}
{people_index_section(_load(others, "people_index_results.json"))}
{sync_api_section(_load(others, "sync_api_results.json"))}"""


if __name__ == "__main__":  # re-render without re-measuring: python benchmarks/report.py [results.json]
    import sys

    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("results.json"))
    results = json.loads(source.read_text())
    source.with_name("RESULTS.md").write_text(render(results))
    readme_speed.rewrite(results)
