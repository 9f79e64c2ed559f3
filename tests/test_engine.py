"""The face engine on real photos: who is recognised, where the boxes are, how many faces."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from shared import errors
from shared.engine.annotate import annotate
from shared.config import EngineConfig
from shared.engine.faces import Box, detect_faces, enrollment_face, face_distance, find_faces
from shared.errors import FaceError
from shared.engine.matching import Gallery, identify

THRESHOLD = EngineConfig().threshold


def iou(a: Box, b: Box) -> float:
    left, top = max(a.left, b.left), max(a.top, b.top)
    right = min(a.left + a.width, b.left + b.width)
    bottom = min(a.top + a.height, b.top + b.height)
    inter = max(0, right - left) * max(0, bottom - top)
    return inter / (a.width * a.height + b.width * b.height - inter)


def single_face_photos(labels) -> list[tuple[str, str]]:
    """(path, person) of every one-face photo in people/."""
    return [(r["path"], r["people"]) for r in labels if r["path"].startswith("people/") and r["faces"] == "1"]


@pytest.mark.parametrize("query, expected", [("seed/john1.jpg", True), ("seed/john2.jpg", True),
                                             ("seed/jim-carrey.jpg", False)])
def test_seed_example(photos, query, expected):
    (known,) = photos.faces("seed/john0.jpg")
    (face,) = photos.faces(query)
    distance = face_distance(known.embedding, face.embedding)[0]
    assert bool(distance <= THRESHOLD) is expected


def test_every_same_person_pair_matches_and_every_other_pair_does_not(photos, labels):
    people = single_face_photos(labels)
    assert len(people) >= 15
    embeddings = {}
    for path, _ in people:
        faces = photos.faces(path)
        assert len(faces) == 1, f"{path}: expected one face, found {len(faces)}"
        embeddings[path] = faces[0].embedding
    wrong = []
    for (a, pa), (b, pb) in itertools.combinations(people, 2):
        distance = face_distance(embeddings[a], embeddings[b])[0]
        if (distance <= THRESHOLD) != (pa == pb):
            wrong.append((a, b, round(float(distance), 3)))
    assert not wrong


@pytest.fixture(scope="module")
def people_gallery(photos, labels) -> Gallery:
    return Gallery.from_pairs((person, photos.faces(path)[0].embedding) for path, person in single_face_photos(labels))


@pytest.mark.parametrize("path", ["multi/two_people.jpg", "multi/obama_and_biden.jpg", "multi/kit_with_rose.jpg"])
def test_group_photos_count_and_identify_everyone(photos, labels, people_gallery, path):
    row = next(r for r in labels if r["path"] == path)
    faces = photos.faces(path)
    assert len(faces) == int(row["faces"])
    matches = identify(np.array([f.embedding for f in faces]), people_gallery, THRESHOLD)
    known = sorted(m.person for m in matches if m.person)
    assert known == sorted(row["people"].split(";"))
    unknown = [m for m in matches if m.person is None]
    assert len(unknown) == len(faces) - len(known)  # the third face of obama_and_biden is a stranger


@pytest.mark.parametrize("path", ["hard/obama_partial_face.jpg", "hard/obama_partial_face2.jpg"])
def test_faces_cut_by_the_frame(photos, people_gallery, path):
    (face,) = photos.faces(path)
    height, width = photos.image(path).shape[:2]
    box = face.box
    assert box.left == 0 or box.top == 0 or box.left + box.width == width or box.top + box.height == height
    assert box.left >= 0 and box.top >= 0 and box.left + box.width <= width and box.top + box.height <= height
    (match,) = identify(face.embedding, people_gallery, THRESHOLD)
    assert match.person == "obama"


def test_rgba_png_is_obama(photos, people_gallery):
    (face,) = photos.faces("hard/32bit.png")
    assert identify(face.embedding, people_gallery, THRESHOLD)[0].person == "obama"


@pytest.mark.parametrize("path", ["multi/obama_and_biden.jpg", "people/obama/obama3.jpg", "people/biden/biden.jpg"])
def test_downscaled_detection_finds_the_same_boxes_as_full_size(photos, path):
    image = photos.image(path)
    assert max(image.shape[:2]) > EngineConfig().detect_max_side, "the photo must be large enough to be downscaled"
    full = detect_faces(image, EngineConfig(detect_max_side=10_000, upsample_below=0))
    fast = detect_faces(image, EngineConfig())
    assert len(fast) == len(full) >= 1
    for a, b in zip(fast, full):
        assert iou(a, b) > 0.6


def test_small_images_are_upsampled_to_find_small_faces(photos):
    """A face shrunk to ~45 px is below HOG's 80 px window; upsampling still finds it."""
    image = photos.image("seed/john0.jpg")
    from PIL import Image
    small = np.asarray(Image.fromarray(image).resize((image.shape[1] * 45 // 130, image.shape[0] * 45 // 130)))
    assert len(detect_faces(small, EngineConfig(upsample_below=0))) == 0
    (box,) = detect_faces(small, EngineConfig())
    assert 30 < box.width < 70


def test_cnn_detector_agrees_with_hog(photos):
    image = photos.image("seed/john0.jpg")
    (hog,) = detect_faces(image, EngineConfig())
    (cnn,) = detect_faces(image, EngineConfig(detector="cnn"))
    assert iou(hog, cnn) > 0.4


def test_jittered_enrollment_still_matches(photos):
    image = photos.image("seed/john0.jpg")
    (jittered,) = find_faces(image, jitters=3)
    (plain,) = photos.faces("seed/john0.jpg")
    assert 0 < face_distance(plain.embedding, jittered.embedding)[0] < 0.2
    (query,) = photos.faces("seed/john1.jpg")
    assert face_distance(jittered.embedding, query.embedding)[0] <= THRESHOLD


def test_enrollment_face_rules(photos):
    assert enrollment_face(photos.faces("seed/john0.jpg")).box.width > 100
    with pytest.raises(FaceError) as multiple:
        enrollment_face(photos.faces("multi/two_people.jpg"))
    assert multiple.value.code == errors.MULTIPLE_FACES
    with pytest.raises(FaceError) as none:
        enrollment_face([])
    assert none.value.code == errors.NO_FACE
    with pytest.raises(FaceError) as small:
        enrollment_face(photos.faces("seed/john0.jpg"), EngineConfig(min_face=200))
    assert small.value.code == errors.FACE_TOO_SMALL


def test_a_photo_without_a_face(photos):
    image = photos.image("people/obama/obama3.jpg")
    (face,) = photos.faces("people/obama/obama3.jpg")
    background = image[:, : face.box.left - 50]  # the part of the photo left of the face
    assert background.shape[1] > 200
    assert find_faces(np.ascontiguousarray(background)) == []


def test_annotate_draws_the_boxes(photos):
    from io import BytesIO
    from PIL import Image
    image = photos.image("multi/two_people.jpg")
    faces = photos.faces("multi/two_people.jpg")
    jpeg = annotate(image, [f.box for f in faces], ["obama", None])
    drawn = np.asarray(Image.open(BytesIO(jpeg)))
    assert drawn.shape == image.shape
    known, unknown = faces[0].box, faces[1].box
    top_edge = drawn[known.top + 1, known.left + known.width // 2].astype(int)
    assert top_edge[1] > 150 and top_edge[0] < 120, "known faces are outlined in green"
    top_edge = drawn[unknown.top + 1, unknown.left + unknown.width // 2].astype(int)
    assert top_edge[0] > 200 and top_edge[1] < 120, "unknown faces are outlined in red"
