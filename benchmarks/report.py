"""benchmarks/RESULTS.md from the figures run_all.py gathered (results.json)."""
from __future__ import annotations

import math

STAGES = ("decode", "detect", "landmarks", "embed")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _usd(value: float) -> str:
    return f"${value:.4f}" if value < 0.1 else f"${value:.2f}"


def _n(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def engine_section(r: dict) -> str:
    e = r["engine"]
    cfg = e["config"]
    settings = {
        f"lambdaface (detect at max side {cfg['detect_max_side']}, upsample below {cfg['upsample_below']})": e["chosen"],
        "full size, upsample 1 (face_recognition's default)": e["full_size_upsample_1"],
    }
    per_image = _table(
        ["detection", *(f"{s} ms" for s in STAGES), "total ms", "images/s", "faces"],
        [[name, *(_n(m["ms_per_image"][s]) for s in STAGES), _n(m["total_ms_per_image"]), _n(m["images_per_s"], 2),
          str(m["faces"])] for name, m in settings.items()],
    )
    per_face = _table(
        ["detection", *(f"{s} ms" for s in STAGES)],
        [[name, *(_n(m["ms_per_face"][s]) for s in STAGES)] for name, m in settings.items()],
    )
    return f"""## Engine, per stage

{r['photos']} still photos of `../shared/faces` ({e['chosen']['faces']} faces), in one process, models loaded
beforehand; medians of {r['settings']['repeats']} runs. Landmarks and embeddings always use the full-resolution image.

Per image:

{per_image}

Per face (the stage's time divided by the faces found; decode and detect are really per image):

{per_face}

Matching one face against 100,000 enrolled faces (vectorised, in memory): {_n(r['match_100k_ms'])} ms.
"""


def cold_section(r: dict) -> str:
    c = r["cold_start"]
    rows = [
        ["interpreter start", _n(c["interpreter"], 2)],
        ["imports (`handlers.recognize`: boto3, Powertools, numpy, dlib, the engine)", _n(c["imports"], 2)],
        ["model loading (HOG detector, 5-point landmarks, ResNet)", _n(c["models"], 2)],
        ["first image (`people/obama/obama.jpg`)", _n(c["first_image"], 2)],
        ["**new process to first result**", f"**{_n(c['seconds_to_first_result'], 2)}**"],
    ]
    rss = [w["worker_peak_rss_mb"] for w in r["local"]]
    return f"""## Cold start and memory

A new Python process imports the recognize handler, loads the models and analyses one photo
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
Both use dlib's HOG detector and ResNet model with one jitter; face_recognition downsizes images
larger than 1600 px and detects with one upsampling, lambdaface detects on a copy at most
{r['engine']['config']['detect_max_side']} px.

{_table(["command", "seconds", "images/s", "faces found", f"images with the labelled count ({f['expected_faces']} faces)", "matches with john0"], rows)}

**lambdaface processes {_n(f['ratio_images_per_s'], 2)}x the images per second of face_recognition**;
images where the two found a different number of faces: {', '.join(differ) if differ else 'none'}.
"""


def local_section(r: dict) -> str:
    rows = []
    for w in r["local"]:
        m = w["median"]
        rows.append([str(w["workers"]), _n(m["images_per_s"], 2), _n(m["latency_p50_s"]), _n(m["latency_p95_s"]),
                     _n(m["engine_ms_per_image"], 0), _n(m["handler_ms_per_image"], 0), _n(m["worker_ms_per_image"], 0),
                     _n(m["overhead_ms_per_image"], 0), f"{int(m['lost'])} / {int(m['duplicated'])}",
                     f"{int(m['left_in_queue'])} / {int(m['dead_letters'])}"])
    idle = [[str(w["workers"]), _n(w["idle"]["latency_s"], 2), _n(w["idle"]["engine_ms"], 0), _n(w["idle"]["overhead_ms"], 0)]
            for w in r["local"]]
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

{_table(["recognize workers", "images/s", "p50 s", "p95 s", "engine ms/image", "handler ms/image", "worker ms/image", "overhead ms/image", "lost / duplicated", "left in queue / DLQ"], rows)}

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

{_table(["recognize workers", "upload to result s", "engine ms", "pipeline overhead ms"], idle)}

![throughput against workers, and the latency distribution of the bursts](results.png)
"""


def cost_section(r: dict) -> str:
    c = r["cost"]
    m = c["model"]
    lines = c["per_1000_images"]
    p = m["prices"]
    q = m["requests"]
    rows = [
        ["Lambda compute", f"{_n(m['seconds_per_image'], 3)} s x {m['memory_mb'] / 1024:g} GB x ${p['lambda_gb_second']:.10f}/GB-s", _usd(lines["lambda_compute"])],
        ["Lambda requests", f"{q['lambda_invocations']:g} invocation/image x ${p['lambda_request'] * 1e6:.2f}/M", _usd(lines["lambda_requests"])],
        ["SQS", f"{q['sqs']:g} requests/image x ${p['sqs_request'] * 1e6:.2f}/M", _usd(lines["sqs"])],
        ["S3", f"{q['s3_put']:g} PUT x ${p['s3_put'] * 1000:g}/1000 + {q['s3_get']:g} GET x ${p['s3_get'] * 1000:g}/1000", _usd(lines["s3"])],
        ["DynamoDB on demand", f"{q['dynamodb_writes']:g} writes x ${p['dynamodb_write_unit'] * 1e6:g}/M + {q['dynamodb_reads']:g} read x ${p['dynamodb_read_unit'] * 1e6:g}/M", _usd(lines["dynamodb"])],
        ["**lambdaface total**", "", f"**{_usd(lines['total'])}**"],
        ["Amazon Rekognition, SearchFacesByImage (largest face only)", f"${p['rekognition_image'] * 1000:.2f}/1000 images", _usd(c["rekognition_per_1000_images"]["largest_face_only"])],
        ["Amazon Rekognition, DetectFaces + a search per face",
         f"{1 + c['faces_per_image']:.2f} calls/image (these photos: {c['faces_per_image']:.2f} faces/image)",
         _usd(c["rekognition_per_1000_images"]["every_face"])],
    ]
    ratio = c["rekognition_per_1000_images"]["largest_face_only"] / lines["total"]
    return f"""## Cost per 1000 images

Seconds per image = the median handler time per image measured above with one worker
({_n(m['seconds_per_image'] * 1000, 0)} ms), taken as Lambda's billed duration; memory = `RecognizeMemorySize` in
template.yaml ({m['memory_mb']} MB). This assumes a Lambda vCPU at that size is as fast as one
core of this machine (not measured here: below 1769 MB a function gets a fraction of a vCPU and
runs proportionally longer, so the GB-seconds stay about the same; dlib uses one thread, so more
memory buys nothing). Prices: {c['prices_as_of']}, us-east-1, x86, no free tier.

{_table(["line", "how", "per 1000 images"], rows)}

Rekognition costs about **{ratio:.0f}x** as much per image as this pipeline at list price (first tier;
Rekognition also bills $0.01 per 1000 stored faces a month, and the gallery here costs
DynamoDB storage instead). Not included on either side: the upload of the photo to S3 and its
storage, data transfer, CloudWatch Logs, the pollers' empty SQS long polls while idle (about a
cent a day for both queues at 5 pollers each). A cold start's init phase ({_n(r['cold_start']['seconds_to_first_result'], 1)} s) costs
{_usd(c['cold_start_usd'])} each.
"""


def video_section(r: dict) -> str:
    if "video" not in r:
        return ""
    v = r["video"]
    rows = []
    for m in v["measured"]:
        run = m["runs"][-1]
        rows.append([str(m["video_workers"]), _n(run["wall_s"], 1), _n(run["wall_per_video_s"], 2),
                     str(run["segments"]), str(run["frames_sampled"]), _n(run["s_per_frame"], 2),
                     ", ".join(run["people"])])
    speedups = ", ".join(f"{w} workers: {s:.2f}x" for w, s in v["speedup"].items())
    return f"""## Video, fanned out across segments

The 9.2 s clip (`video/short_hamilton_clip.mp4`, 640x360) on the local stack after enrolling
lin1.png and alex3.png, with `--workers N` video workers, {v['segment_s']} s segments, the CNN detector
on {v['sample_fps']} sampled frames per second. Wall seconds from upload to the merged result.

{_table(["video workers", "wall s", "wall s per video s", "segments", "frames", "s per frame", "people"], rows)}

Speedup over 1 worker: {speedups}. The CNN detector takes most of the time (single-threaded);
segments are uneven (the last is short), which caps the speedup of a short clip, and on 2 cores
the moto server and the other functions' workers share the CPU with the video workers.
"""


def render(r: dict) -> str:
    m = r["machine"]
    return f"""# Benchmarks

Made by `make bench` (benchmarks/run_all.py) on {m['date']}: {m['cores']} cores ({m['cpu']}),
{m['memory_gb']} GB, Python {m['python']}, dlib {m['dlib']}; load average {m['load_average']:.1f} when it started
(the machine is shared, so figures are noisy). It took {r['duration_s'] / 60:.1f} minutes. Raw figures: results.json.
No test asserts a time; these figures are measurements, not guarantees.

{engine_section(r)}
{cold_section(r)}
{fr_section(r)}
{local_section(r)}
{video_section(r)}
{cost_section(r)}"""


if __name__ == "__main__":  # re-render without re-measuring: python benchmarks/report.py [results.json]
    import json
    import sys
    from pathlib import Path

    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("results.json"))
    source.with_name("RESULTS.md").write_text(render(json.loads(source.read_text())))
