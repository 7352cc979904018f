"""Specifications of the embedded schema registry's REST API (Confluent's endpoints clients call)."""

from __future__ import annotations

import json

import duckdb
import pytest

from nbstream.formats.registry import SchemaRegistry
from nbstream.server.schema_registry import RegistryError, SchemaRegistryApp

AVRO = json.dumps({"type": "record", "name": "r", "fields": [{"name": "a", "type": "int"}]})


@pytest.fixture
def app() -> SchemaRegistryApp:
    return SchemaRegistryApp(SchemaRegistry(duckdb.connect()))


def post(app: SchemaRegistryApp, path: str, request: dict[str, object]) -> object:
    return app.answer("POST", path, json.dumps(request).encode())[1]


def test_a_registered_schema_is_found_by_id_version_and_lookup(app: SchemaRegistryApp) -> None:
    assert post(app, "/subjects/t-value/versions", {"schema": AVRO}) == {"id": 1}
    assert post(app, "/subjects/t-value/versions", {"schema": AVRO}) == {"id": 1}  # no new version
    compact = json.dumps(json.loads(AVRO), separators=(",", ":"))
    assert app.answer("GET", "/schemas/ids/1", b"") == (200, {"schema": compact})  # no schemaType for AVRO
    latest = app.answer("GET", "/subjects/t-value/versions/latest", b"")[1]
    assert latest["version"] == 1 and latest["id"] == 1  # type: ignore[index]
    assert post(app, "/subjects/t-value", {"schema": AVRO})["version"] == 1  # type: ignore[index]
    assert app.answer("GET", "/subjects", b"") == (200, ["t-value"])


def test_json_schemas_keep_their_type(app: SchemaRegistryApp) -> None:
    sid = post(app, "/subjects/j-value/versions", {"schema": '{"type": "object"}', "schemaType": "JSON"})
    assert app.answer("GET", f"/schemas/ids/{sid['id']}", b"")[1]["schemaType"] == "JSON"  # type: ignore[index]


@pytest.mark.parametrize(("method", "path", "code"), [
    ("GET", "/schemas/ids/7", 40403), ("GET", "/subjects/none/versions/latest", 40401),
    ("GET", "/subjects/none/versions", 40401)])
def test_what_is_not_there_answers_confluents_error_codes(app: SchemaRegistryApp, method: str, path: str,
                                                          code: int) -> None:
    with pytest.raises(RegistryError) as error:
        app.answer(method, path, b"")
    assert error.value.status == 404 and error.value.code == code


def test_a_schema_unknown_to_a_subject_is_not_found(app: SchemaRegistryApp) -> None:
    post(app, "/subjects/t-value/versions", {"schema": AVRO})
    with pytest.raises(RegistryError, match="Schema not found"):
        post(app, "/subjects/t-value", {"schema": '"string"'})
