"""Event parsing, key rules, job ids and result documents: the pipeline's pure parts."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from support.lambda_events import s3_event_body

from shared import errors
from shared.pipeline import keys, results
from shared.pipeline.runner import job_id_for
from shared.aws.events import BadEvent, ObjectEvent, parse_body
from shared.aws.gallery_table import decode, encode
from shared.engine.faces import Box
from shared.engine.matching import Candidate, Match


def test_keys_are_url_decoded() -> None:
    body = json.dumps(
        {"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "t",
                      "s3": {"bucket": {"name": "b"}, "object": {"key": "queries/my+photo%C3%A9%2B1.jpg", "eTag": '"abc"'}}}]}
    )
    [event] = parse_body(body)
    assert event.key == "queries/my photoé+1.jpg"
    assert event.etag == "abc" and event.created and not event.removed


def test_round_trip_of_awkward_keys() -> None:
    for key in ["models/ana maría/1 + 1.jpg", "queries/日本/写真.png", "queries/a%20b.jpg"]:
        [event] = parse_body(s3_event_body("b", key, "e"))
        assert event.key == key


def test_s3_test_event_is_skipped() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T12:00:00Z", "Bucket": "b"})
    assert parse_body(body) == []


@pytest.mark.parametrize("body", ["not json", "[]", json.dumps({"hello": 1}), json.dumps({"Records": [{"s3": {}}]})])
def test_foreign_messages_are_bad_events(body: str) -> None:
    with pytest.raises(BadEvent):
        parse_body(body)


def test_removed_events_have_no_etag() -> None:
    [event] = parse_body(s3_event_body("b", "models/x/y.jpg", event_name="ObjectRemoved:Delete", sequencer="0A1"))
    assert event.removed and event.etag == "" and event.sequencer == "0A1"


def test_job_ids_name_the_event_not_just_the_object() -> None:
    one = ObjectEvent("b", "queries/a.jpg", "ObjectCreated:Put", etag="e1", sequencer="01")
    assert job_id_for(one, "recognize") == job_id_for(ObjectEvent(**vars(one)), "recognize")
    others = [
        ObjectEvent("b", "queries/a.jpg", "ObjectCreated:Put", etag="e2", sequencer="01"),
        ObjectEvent("b", "queries/a.jpg", "ObjectCreated:Put", etag="e1", sequencer="02"),  # same bytes, new upload
        ObjectEvent("b2", "queries/a.jpg", "ObjectCreated:Put", etag="e1", sequencer="01"),
        ObjectEvent("b", "queries/b.jpg", "ObjectCreated:Put", etag="e1", sequencer="01"),
    ]
    ids = {job_id_for(e, "recognize") for e in [one, *others]}
    assert len(ids) == 5
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize("person", ["john", "Ana-Maria_2", "a.b", "x" * 64, "J.R._Smith-3"])
def test_valid_person_names(person: str) -> None:
    assert keys.parse_model_key(f"models/{person}/photo.jpg") == (person, "photo.jpg")


@pytest.mark.parametrize(
    "key, code",
    [
        ("models/john.jpg", errors.INVALID_KEY),
        ("models/john/sub/photo.jpg", errors.INVALID_KEY),
        ("models/john/", errors.INVALID_KEY),
        ("queries/john/photo.jpg", errors.INVALID_KEY),
        ("models/a..b/photo.jpg", errors.INVALID_PERSON),
        ("models/../photo.jpg", errors.INVALID_PERSON),
        ("models/" + "x" * 65 + "/photo.jpg", errors.INVALID_PERSON),
        ("models/jo hn/photo.jpg", errors.INVALID_PERSON),
        ("models/josé/photo.jpg", errors.INVALID_PERSON),
        ("models//photo.jpg", errors.INVALID_PERSON),
    ],
)
def test_invalid_model_keys(key: str, code: str) -> None:
    with pytest.raises(errors.FaceError) as raised:
        keys.parse_model_key(key)
    assert raised.value.code == code


def test_embeddings_are_stored_as_128_little_endian_float32() -> None:
    embedding = np.linspace(-0.3, 0.3, 128)
    data = encode(embedding)
    assert len(data) == 512 and data[:4] == struct.pack("<f", -0.3)
    assert np.allclose(decode(data), embedding, atol=1e-7)
    with pytest.raises(ValueError):
        encode(np.zeros(127))


def test_result_document_fields_and_order() -> None:
    match = Match("john", 0.41234, [Candidate("john", 0.41234), Candidate("jim", 0.8)])
    fields = {
        "finished_at": "t",
        "kind": "recognize",
        "job_id": "j",
        "source": "queries/a.jpg",
        "status": "succeeded",
        "faces": [results.face_entry(Box(1, 2, 3, 4), match), results.face_entry(Box(5, 6, 7, 8), Match(None, None, []))],
        "people": ["john"],
        "error": None,
        "model": results.model(0.6),
        "timings_ms": results.timings({"decode": 1.234}),
    }
    document = results.document(fields)
    assert list(document) == ["job_id", "kind", "source", "status", "faces", "people", "model", "timings_ms", "finished_at"]
    assert document["faces"][0] == {
        "box": {"left": 1, "top": 2, "width": 3, "height": 4},
        "person": "john",
        "distance": 0.4123,
        "candidates": [{"person": "john", "distance": 0.4123}, {"person": "jim", "distance": 0.8}],
    }
    assert document["faces"][1]["person"] is None and document["faces"][1]["candidates"] == []
    assert document["model"] == {"name": "dlib_face_recognition_resnet_model_v1", "threshold": 0.6}
    assert document["timings_ms"] == {"decode": 1.2}
    assert keys.result_key("queries/party.jpg") == "results/queries/party.jpg.json"
    assert keys.annotated_key("queries/party.jpg") == "results/queries/party.jpg.jpg"
