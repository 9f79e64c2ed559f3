"""The README's "Speed" paragraph, made from benchmarks/results.json (so the two cannot drift).

`make bench` (run_all.py) and `python benchmarks/report.py` rewrite the README's block between
BEGIN and END; tests/test_readme_speed.py checks that the README holds exactly what
`paragraph(results.json)` makes.
"""
from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN = "<!-- speed: made from benchmarks/results.json by benchmarks/readme_speed.py; do not edit -->"
END = "<!-- speed: end -->"


def paragraph(r: dict) -> str:
    """The Speed paragraph's figures, each from the benchmark run that `r` (results.json) holds."""
    e = r["engine"]["chosen"]
    stages = e["ms_per_image"]
    fr = r["face_recognition"]
    local = {w["workers"]: w["median"]["images_per_s"] for w in r["local"]}
    video = {m["video_workers"]: m["runs"][-1] for m in r["video"]["measured"]}
    duration = next(iter(video.values()))["duration_s"]
    cost = r["cost"]
    without = cost.get("without_annotation", cost)["per_1000_images"]["total"]
    rekognition = cost["rekognition_per_1000_images"]["largest_face_only"]
    intact = all(w["median"]["lost"] == 0 and w["median"]["duplicated"] == 0 for w in r["local"])
    workers = " and ".join(f"{n:.1f} with {k}" for k, n in sorted(local.items()))
    clips = " and ".join(f"{v['wall_s']:.1f} s with {k}" for k, v in sorted(video.items()))
    return (
        f"On {r['machine']['cores']} cores ({r['machine']['date']}): about {e['total_ms_per_image']:.0f} ms per photo "
        f"(decode {stages['decode']:.0f}, detect {stages['detect']:.0f}, landmarks {stages['landmarks']:.0f}, "
        f"embed {stages['embed']:.0f} ms; {r['engine']['chosen']['ms_per_face']['embed']:.1f} ms per face for the "
        f"descriptor on ONNX Runtime), {fr['lambdaface']['images_per_s'] / fr['face_recognition']['images_per_s']:.1f}x "
        f"the `face_recognition` command's images per second on the same photos (fresh processes, start-up "
        f"included), {r['cold_start']['seconds_to_first_result']:.2f} s from a new process to the first result, "
        f"images/s through the local stack: {workers} worker(s) per function "
        f"({'none lost or duplicated' if intact else 'some lost or duplicated: see RESULTS.md'}), "
        f"a {duration:.1f} s video in {clips} video worker(s), and about ${cost['per_1000_images']['total']:.4f} "
        f"per 1000 images on Lambda (${without:.4f} without the annotated JPEG) against "
        f"${rekognition:.2f} on Amazon Rekognition."
    )


def block(r: dict) -> str:
    """The README block: markers around the paragraph, wrapped at 100 columns."""
    words, lines, line = paragraph(r).split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > 100:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([BEGIN, *lines, line, END]) if line else "\n".join([BEGIN, *lines, END])


def current(readme: str) -> str | None:
    """The block the README holds now, or None."""
    found = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), readme, re.S)
    return found.group(0) if found else None


def rewrite(r: dict, readme: Path = README) -> None:
    """Put `block(r)` into the README in place of the block there."""
    text = readme.read_text()
    old = current(text)
    if old is None:
        raise SystemExit(f"{readme}: no speed block ({BEGIN!r} ... {END!r})")
    readme.write_text(text.replace(old, block(r)))
