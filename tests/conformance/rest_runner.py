"""ksqlDB's REST query-validation tests (RQTT) run through HTTP against ``nbstream serve``.

The 15 files of ``rest-query-validation-tests`` (read in place from ``../shared/conformance``) give
statements, input records, the records expected on topics and the exact responses of ``/ksql`` and
``/query``. This runner drives them as ksqlDB's own ``RestTestExecutor`` does
(``ksqldb-functional-tests/src/test/java/io/confluent/ksql/test/rest/``):

1. a fresh engine behind the server; the topics of the case created;
2. the statements before the first ``SELECT `` sent as **one** ``/ksql`` request (joined by newlines),
   with the case's ``properties`` as ``streamsProperties`` (as on every request);
3. the input records produced, and every persistent query run until it consumed them;
4. each ``SELECT`` sent to ``/query`` (answered whole: pull queries, push queries with a LIMIT); a
   case with ``inputConditions.waitForActivePushQuery`` reads its query's header first, waits until the
   push query runs, then produces the inputs and reads the rest;
5. the records on each topic of ``outputs`` compared (same count, in order: key, value, timestamp);
6. the responses compared with ``responses`` in order: only the fields the expected object names
   (``name|starts_with`` compares a prefix); the rows of a query response are compared as a
   multiset of ``columns`` (ksqlDB's ``verifyOrder`` is false in every case of these files), with
   numbers compared as Java's ``BigDecimal``/``Integer`` are (``10.0`` is not ``10``);
7. ``expectedError``: the first response that is an HTTP error must be it — ``status`` equal,
   ``message`` contained in the error's message, ``type`` ``KsqlStatementErrorMessage`` meaning a
   ``statement_error`` whose ``statementText`` contains the case's last statement. ksqlDB's executor
   lets such a case pass when no error comes and no query answered; this runner does not.

One server serves every case of a process: each case gets a new :class:`KsqlServer` over a new
in-memory :class:`EngineService` behind the same hypercorn listener (a server process per case costs
~2 s of start-up; a fresh engine ~0.2 s). Inputs are produced and outputs read on that engine
directly (ksqlDB's executor uses a Kafka producer and consumer beside the server for the same).
``--jobs N`` runs N such processes on slices of the cases.

    python tests/conformance/rest_runner.py [--files DIR_OR_FILE …] [--filter REGEX] [--jobs 2]
                                            [--json-report FILE] [-v]

The last line printed is ``N passed, M failed, K skipped``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1].parent / "shared" / "conformance"
RQTT_DIR = SHARED / "ksql-qtt" / "rest-query-validation-tests"

#: The server's configuration in ksqlDB's RestQueryTranslationTest / TestKsqlRestApp that nbstream
#: understands: push queries read from the start of their input unless a case says otherwise, and
#: those ksqlDB would run as scalable push queries are named as such.
#: As ksqlDB's REST tests run: from the earliest offset, and with the record cache off (their
#: expected responses and output topics hold every change of a table).
SERVER_PROPERTIES = {"ksql.streams.auto.offset.reset": "earliest", "ksql.query.push.v2.enabled": True,
                     "ksql.streams.cache.max.bytes.buffering": 0}

#: Formats that need a schema registry (issue 13); those nbstream has run, with the case topics' schemas
#: registered in the engine's own registry first, as the shared QTT runner does.
SR_FORMATS = ("AVRO", "PROTOBUF", "PROTOBUF_NOSR", "JSON_SR")
_FORMAT = re.compile(r"\b(?:VALUE_FORMAT|KEY_FORMAT|FORMAT)\s*=\s*'([A-Za-z_]+)'", re.IGNORECASE)

#: Partitions of a topic the harness creates without being told how many (ksqlDB's ``Topic.DEFAULT_PARTITIONS``).
DEFAULT_PARTITIONS = 4

#: Seconds a request may take, and a push query may stream, before the case fails.
REQUEST_SECONDS = 5.0
STATEMENT_MACRO = "{STATEMENT}"


# -- cases ------------------------------------------------------------------------------------------------


@dataclass
class RestCase:
    """One case of an RQTT file, for one of its formats (ksqlDB's ``RestTestCaseBuilder``)."""

    file: str
    name: str
    statements: list[str]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    topics: list[dict[str, Any]]
    properties: dict[str, Any]
    expected_error: dict[str, Any] | None
    responses: list[dict[str, Any]]
    wait_for_push: bool = False
    verify_order: bool = False
    proto: bool = False  # testPullWithProtoFormat: also asks for protobuf responses

    @property
    def admin(self) -> list[str]:
        return self.statements[:self._first_query]

    @property
    def queries(self) -> list[str]:
        return self.statements[self._first_query:]

    @property
    def _first_query(self) -> int:
        """``RestTestExecutor.splitStatements``: statements from the first starting ``SELECT `` on."""
        return next((i for i, s in enumerate(self.statements) if s.startswith("SELECT ")), len(self.statements))


def _qtt() -> Any:
    """The shared runner (``../shared/conformance/qtt_run.py``): its JSON loader and record comparison."""
    if str(SHARED) not in sys.path:
        sys.path.insert(0, str(SHARED))
    import qtt_run

    return qtt_run


def load_cases(paths: list[Path]) -> list[RestCase]:
    """Every enabled case of the RQTT files under ``paths``, once per entry of its ``format``."""
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.glob("*.json")))
    cases = []
    for path in files:
        doc = _qtt().load_qtt_json(path.read_text(encoding="utf-8"))
        for test in doc["tests"]:
            if test.get("enabled", True) is not False:
                cases.extend(_expand(path, test))
    return cases


def _expand(path: Path, test: dict[str, Any]) -> Iterator[RestCase]:
    for fmt in test.get("format") or [None]:
        def subst(value: Any, fmt: str | None = fmt) -> Any:
            return _replace(value, "{FORMAT}", fmt) if fmt is not None else value

        name = f"{path.stem} - {test['name']}" + (f" - {fmt}" if fmt is not None else "")
        yield RestCase(
            file=path.stem, name=name, statements=subst(list(test["statements"])),
            inputs=list(test.get("inputs") or []), outputs=list(test.get("outputs") or []),
            topics=subst(list(test.get("topics") or [])), properties=dict(test.get("properties") or {}),
            expected_error=test.get("expectedError"), responses=list(test.get("responses") or []),
            wait_for_push=bool((test.get("inputConditions") or {}).get("waitForActivePushQuery")),
            verify_order=bool((test.get("outputConditions") or {}).get("verifyOrder")),
            proto=bool(test.get("testPullWithProtoFormat")))


def _replace(value: Any, token: str, text: str) -> Any:
    if isinstance(value, str):
        return value.replace(token, text)
    if isinstance(value, list):
        return [_replace(v, token, text) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, token, text) for k, v in value.items()}
    return value


def skip_reason(case: RestCase) -> str | None:
    """Why the case cannot run on nbstream now (None: it runs)."""
    formats = {f.upper() for s in case.statements for f in _FORMAT.findall(s)}
    for topic in case.topics:
        formats.update(str(topic[k]).upper() for k in ("format", "keyFormat", "valueFormat") if topic.get(k))
        if any(topic.get(k) is not None for k in ("keySchema", "valueSchema", "keySchemaId", "valueSchemaId")):
            formats.add("AVRO" if not topic.get("valueFormat") else str(topic["valueFormat"]).upper())
    from nbstream.formats import SUPPORTED_REGISTRY_FORMATS

    missing = sorted(formats & set(SR_FORMATS) - set(SUPPORTED_REGISTRY_FORMATS))
    if missing:
        return f"format {'/'.join(missing)}: not supported yet (issue 13)"
    if case.proto:
        return "protobuf responses of /query-stream (application/vnd.ksql.v1+protobuf; issue 13)"
    return None


# -- the server -------------------------------------------------------------------------------------------


class InProcessServer:
    """``nbstream serve``'s ASGI app on hypercorn, on a free loopback port, in a thread of this
    process, serving one :class:`KsqlServer` at a time; :meth:`fresh` replaces it by a new one over
    a new in-memory engine."""

    def __init__(self) -> None:
        from nbstream.server import hypercorn_fixes
        from nbstream.server.command import hypercorn_config, listen

        self.current: Any = None
        self._listener = listen("127.0.0.1", 0)
        self.port = self._listener.getsockname()[1]
        self._config = hypercorn_config(self._listener)
        self._loop = asyncio.new_event_loop()
        self._stopped: asyncio.Event | None = None
        hypercorn_fixes.apply()
        self._thread = threading.Thread(target=self._serve, name="rqtt-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from hypercorn.asyncio import serve

        asyncio.set_event_loop(self._loop)
        self._stopped = asyncio.Event()
        self._loop.run_until_complete(serve(self._app, self._config, shutdown_trigger=self._stopped.wait))  # type: ignore[arg-type]

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.current(scope, receive, send)

    def fresh(self) -> Any:
        """A new engine behind the server (the previous one stopped and closed); its service."""
        from nbstream.runtime.service import EngineService
        from nbstream.server.app import KsqlServer, ServerConfig

        old = self.current
        if old is not None:
            old.begin_shutdown()
        server = KsqlServer(ServerConfig(), lambda: EngineService(properties=SERVER_PROPERTIES))
        asyncio.run_coroutine_threadsafe(self._start(server), self._loop).result(REQUEST_SECONDS)
        self.current = server
        if old is not None:
            old.close()
        return server.service

    @staticmethod
    async def _start(server: Any) -> None:
        server.start()
        while server.state != "READY":
            if server.failure:
                raise RuntimeError(server.failure)
            await asyncio.sleep(0.002)

    def close(self) -> None:
        if self.current is not None:
            self.current.begin_shutdown()
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)
        if self.current is not None:
            self.current.close()


# -- HTTP -------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """An HTTP response: its status and body parsed as ksqlDB's Java client reads it."""

    status: int
    body: Any  # /ksql: the JSON; /query: the list of StreamedRow objects; an error: the error JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def parse_json(data: bytes | str) -> Any:
    """JSON as ksqlDB's ``ApiJsonMapper`` reads it: non-integral numbers as exact decimals."""
    return json.loads(data, parse_float=Decimal)


def streamed_rows(body: bytes) -> list[Any]:
    """A ``/query`` body as ``KsqlTargetUtil.toRows`` splits it: one JSON object per line, each
    stripped of a leading ``[``, a trailing ``]`` and a trailing ``,``."""
    rows = []
    for line in body.split(b"\n"):
        if not line:
            continue
        start = 1 if line[:1] == b"[" else 0
        end = len(line) - (1 if line[-1:] == b"]" else 0)
        if end > 0 and line[end - 1:end] == b",":
            end -= 1
        if end > start:
            rows.append(parse_json(line[start:end]))
    return rows


class Client:
    """A keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_SECONDS)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _post(self, path: str, payload: dict[str, Any]) -> http.client.HTTPResponse:
        body = json.dumps(payload, default=_json_default).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"} if path == "/ksql" else \
            {"Content-Type": "application/vnd.ksql.v1+json", "Accept": "application/vnd.ksql.v1+json"}
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request("POST", path, body=body, headers=headers)
                return connection.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ksql(self, sql: str, properties: dict[str, Any]) -> Reply:
        response = self._post("/ksql", {"ksql": sql, "streamsProperties": properties})
        return Reply(response.status, parse_json(response.read()))

    def query(self, sql: str, properties: dict[str, Any]) -> Reply:
        """``/query`` read to its end."""
        response = self._post("/query", {"ksql": sql, "streamsProperties": properties})
        data = response.read()
        return Reply(response.status, streamed_rows(data) if response.status == 200 else parse_json(data))

    def query_after(self, sql: str, properties: dict[str, Any], then: Any) -> Reply:
        """``/query`` whose header is read, then ``then()`` runs, then the rest is read."""
        response = self._post("/query", {"ksql": sql, "streamsProperties": properties})
        if response.status != 200:
            return Reply(response.status, parse_json(response.read()))
        first = response.readline()
        then()
        return Reply(200, streamed_rows(first + response.read()))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


# -- comparing responses ----------------------------------------------------------------------------------


class Mismatch(AssertionError):
    """The server's answer differs from the expected one."""


def java_value(value: Any) -> Any:
    """A hashable value that is equal where Java's ``equals`` of what Jackson reads is: integers
    and decimals differ, decimals of another scale differ, booleans are no numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if exponent > 0:  # written plain (WRITE_BIGDECIMAL_AS_PLAIN) it reads back as an integer
            return ("int", int(value))
        return ("decimal", int(value.scaleb(-exponent)), exponent)
    if isinstance(value, float):
        return java_value(Decimal(repr(value)))
    if isinstance(value, list):
        return ("list", tuple(java_value(v) for v in value))
    if isinstance(value, dict):
        return ("map", frozenset((k, java_value(v)) for k, v in value.items()))
    raise TypeError(type(value).__name__)


def match_fields(actual: Any, expected: dict[str, Any], path: str, rows: tuple[Counter[Any], Counter[Any]] | None,
                 statement: str | None) -> None:
    """``RestTestExecutor.matchResponseFields``: every field the expected object names, recursively;
    with ``rows``, a query row's ``columns`` are counted there instead of compared in place."""
    if not isinstance(actual, dict):
        raise Mismatch(f"{path}: expected an object, got {actual!r}")
    for raw_key, raw_value in expected.items():
        key, _, operator = raw_key.partition("|")
        value = raw_value.replace(STATEMENT_MACRO, statement) if isinstance(raw_value, str) and statement else raw_value
        if key not in actual:
            raise Mismatch(f"{path}: no '{key}' in {_short(actual)}")
        got, where = actual[key], f"{path}->{key}"
        if isinstance(value, dict):
            match_fields(got, value, where, rows, statement)
        elif operator.lower() == "starts_with":
            if not (isinstance(got, str) and got.startswith(value)):
                raise Mismatch(f"{where}: expected a string starting {value!r}, got {got!r}")
        elif rows is not None and key.lower() == "columns" and "row" in path:
            rows[0][java_value(got)] += 1
            rows[1][java_value(value)] += 1
        elif java_value(got) != java_value(value):
            raise Mismatch(f"{where}: expected {_short(value)}, got {_short(got)}")


def verify_response(actual: tuple[str, Any], expected: dict[str, Any], statement: str | None,
                    verify_order: bool, index: int) -> None:
    """One expected response (``{"admin": {…}}`` or ``{"query": [...]}``) against the actual one."""
    (kind, payload), = expected.items()
    got_kind, got = actual
    if kind != got_kind:
        raise Mismatch(f"responses[{index}]: expected a {kind} response, got a {got_kind} response: {_short(got)}")
    if kind == "admin":
        match_fields(got, payload, f"responses[{index}]->admin", None, statement)
        return
    if len(got) != len(payload):
        raise Mismatch(f"responses[{index}]: expected {len(payload)} elements, got {len(got)}:\n"
                       f"      expected {_short(payload, 600)}\n      got      {_short(got, 600)}")
    counts: tuple[Counter[Any], Counter[Any]] = (Counter(), Counter())
    for i, (row, want) in enumerate(zip(got, payload, strict=True)):
        match_fields(row, want, f"responses[{index}]->query[{i}]", None if verify_order else counts, statement)
    if counts[0] != counts[1]:
        raise Mismatch(f"responses[{index}]: rows differ:\n      expected {_short(payload, 600)}\n"
                       f"      got      {_short(got, 600)}")


def verify_error(reply: Reply, expected: dict[str, Any], last_statement: str) -> None:
    """``ExpectedErrorNode``: status, a message containing the expected one, the error's type."""
    body = reply.body if isinstance(reply.body, dict) else {}
    message = str(body.get("message", ""))
    if expected.get("status") is not None and reply.status != int(expected["status"]):
        raise Mismatch(f"expected HTTP {expected['status']}, got {reply.status}: {_short(body)}")
    if expected.get("message") is not None and str(expected["message"]) not in message:
        raise Mismatch(f"expected an error message containing {expected['message']!r}, got {message!r}")
    kind = str(expected.get("type", ""))
    if kind.endswith("KsqlStatementErrorMessage"):
        if body.get("@type") != "statement_error":
            raise Mismatch(f"expected a statement_error, got {_short(body)}")
        if last_statement not in str(body.get("statementText", "")):
            raise Mismatch(f"the error's statementText {body.get('statementText')!r} is not the last statement")


def _short(value: Any, most: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= most else text[:most - 3] + "..."


# -- running a case ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    file: str
    status: str  # pass, fail, skip
    reason: str = ""
    seconds: float = 0.0


class ExpectedErrorCame(Exception):
    """The response that was to fail failed as expected."""


def run_case(case: RestCase, server: InProcessServer, client: Client) -> None:
    """Run ``case``; raises :class:`Mismatch` (or anything else) when it fails."""
    service = server.fresh()
    _create_topics(service, case)
    _qtt()._register_topic_schemas(service, case)
    responses: list[tuple[str, Any]] = []
    try:
        if case.admin:
            reply = client.ksql("\n".join(case.admin), case.properties)
            _check_error(case, reply)
            responses += [("admin", entity) for entity in reply.body]
        if not case.wait_for_push:
            _produce(service, case)
        for sql in case.queries:
            if case.wait_for_push:
                reply = client.query_after(sql, case.properties, lambda: _produce_when_pushing(service, case))
            else:
                reply = client.query(sql, case.properties)
            _check_error(case, reply)
            responses.append(("query", reply.body))
    except ExpectedErrorCame:
        return
    if case.expected_error is not None:
        raise Mismatch(f"expected an error ({_short(case.expected_error)}), but every request succeeded")
    _verify_outputs(service, case)
    if len(responses) < len(case.responses):
        raise Mismatch(f"expected {len(case.responses)} responses, got {len(responses)}: {_short(responses)}")
    for index, want in enumerate(case.responses):
        statement = case.statements[index] if index < len(case.statements) else None
        verify_response(responses[index], want, statement, case.verify_order, index)


def _check_error(case: RestCase, reply: Reply) -> None:
    if reply.ok:
        return
    if case.expected_error is None:
        raise Mismatch(f"the server failed: HTTP {reply.status} {_short(reply.body, 500)}")
    verify_error(reply, case.expected_error, case.statements[-1])
    raise ExpectedErrorCame


_CREATE_SOURCE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:SOURCE\s+)?(?:STREAM|TABLE)\s+"
                            r"(?:IF\s+NOT\s+EXISTS\s+)?[`\"]?[\w.]+[`\"]?\s*\(.*\bWITH\s*\((?P<with>.*)\)",
                            re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"(\w+)\s*=\s*(?:'((?:[^']|'')*)'|(\w+))")


def _create_topics(service: Any, case: RestCase) -> None:
    """The topics ksqlDB's harness creates before the statements (``TestCaseBuilderUtil.getAllTopics``):
    the case's ``topics``, those of its CREATE STREAM/TABLE statements with columns (their
    ``PARTITIONS``), and those of its inputs and outputs; :data:`DEFAULT_PARTITIONS` where none is given."""
    partitions = {t["name"]: int(t.get("partitions") or DEFAULT_PARTITIONS) for t in case.topics if t.get("name")}
    for statement in case.statements:
        match = _CREATE_SOURCE.match(statement)
        if match is None:
            continue
        props = {m.group(1).upper(): m.group(2) if m.group(2) is not None else m.group(3)
                 for m in _PROPERTY.finditer(match.group("with"))}
        if props.get("KAFKA_TOPIC"):
            count = props.get("PARTITIONS", "")
            partitions.setdefault(props["KAFKA_TOPIC"], int(count) if count.isdigit() else DEFAULT_PARTITIONS)
    for record in case.inputs + case.outputs:
        partitions.setdefault(record["topic"], DEFAULT_PARTITIONS)
    for name, count in partitions.items():
        service.create_topic(name, partitions=count)


def _produce(service: Any, case: RestCase) -> None:
    """Every input record, then every persistent query run until it took them."""
    qtt = _qtt()
    for record in case.inputs:
        headers = qtt._expected_headers(record) if record.get("headers") is not None else None
        window = record.get("window")
        key, value = _floats(record.get("key")), _floats(record.get("value"))
        service.produce(record["topic"], value, key=key, timestamp=int(record.get("timestamp") or 0),
                        partition=_partition(service, record["topic"], key, value), headers=headers,
                        window=(int(window["start"]), int(window.get("end", window["start"]))) if window else None)
    service.run_until_idle(max_seconds=REQUEST_SECONDS)


def _partition(service: Any, topic: str, key: Any, value: Any) -> int:
    """Where the Java producer of ksqlDB's harness puts the record: murmur2 of the serialized key
    (a null key: partition 0, where the sticky partitioner puts a first batch as good as anywhere)."""
    from nbstream.log.kafka import java_partition

    topic = service.resolve_topic(topic)
    key_bytes, _ = service._encode_record(service._format_source(topic), key, value)
    return 0 if key_bytes is None else java_partition(key_bytes, service.log.require(topic).partitions)


def _produce_when_pushing(service: Any, case: RestCase) -> None:
    deadline = time.monotonic() + REQUEST_SECONDS
    while not service.push_subscriptions and time.monotonic() < deadline:
        time.sleep(0.005)
    _produce(service, case)


def _floats(value: Any) -> Any:
    return _replace_numbers(value)


def _replace_numbers(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_replace_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _replace_numbers(v) for k, v in value.items()}
    return value


def _verify_outputs(service: Any, case: RestCase) -> None:
    qtt = _qtt()
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for record in case.outputs:
        by_topic.setdefault(record["topic"], []).append(record)
    for topic, expected in by_topic.items():
        actual = service.consume(topic)
        if len(actual) != len(expected):
            raise Mismatch(f"topic {topic}: expected {len(expected)} records, got {len(actual)}: "
                           + "; ".join(qtt.describe_actual(a) for a in actual[:5]))
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            why = qtt.compare_record(want, got, False, True)
            if why:
                raise Mismatch(f"topic {topic} record {i}: {why}: expected {qtt.describe_expected(want)}, "
                               f"got {qtt.describe_actual(got)}")


def run_cases(cases: list[RestCase]) -> list[Outcome]:
    """Run ``cases`` in this process, one server, a fresh engine each."""
    outcomes = []
    server: InProcessServer | None = None
    client: Client | None = None
    try:
        for case in cases:
            reason = skip_reason(case)
            if reason is not None:
                outcomes.append(Outcome(case.name, case.file, "skip", reason))
                continue
            if server is None:
                server = InProcessServer()
                client = Client(server.port)
            assert client is not None
            started = time.monotonic()
            try:
                run_case(case, server, client)
                outcome = Outcome(case.name, case.file, "pass")
            except Mismatch as mismatch:
                outcome = Outcome(case.name, case.file, "fail", str(mismatch))
            except Exception as error:  # a crash or timeout is a failure of this case only
                client.close()
                outcome = Outcome(case.name, case.file, "fail", f"{type(error).__name__}: {error}")
            outcome.seconds = round(time.monotonic() - started, 3)
            outcomes.append(outcome)
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.close()
    return outcomes


# -- the command line -------------------------------------------------------------------------------------


def _in_processes(paths: list[Path], pattern: str | None, jobs: int) -> list[Outcome]:
    """Run the cases in ``jobs`` processes of this script (each a slice of them); their outcomes in order."""
    with tempfile.TemporaryDirectory() as folder:
        workers = []
        for job in range(jobs):
            report = Path(folder) / f"{job}.json"
            args = [sys.executable, __file__, "--slice", f"{job}/{jobs}", "--json-report", str(report)]
            args += [a for p in paths for a in ("--files", str(p))] + (["--filter", pattern] if pattern else [])
            workers.append((subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), report))
        outcomes = []
        for process, report in workers:
            _, err = process.communicate()
            if process.returncode not in (0, 1) or not report.exists():
                raise RuntimeError(f"a runner process failed ({process.returncode}):\n{err.decode()[-3000:]}")
            outcomes += [Outcome(**o) for o in json.loads(report.read_text())]
    return outcomes


def select(cases: list[RestCase], pattern: str | None, part: str | None) -> list[RestCase]:
    if pattern:
        cases = [c for c in cases if re.search(pattern, c.name)]
    if part:
        index, count = (int(n) for n in part.split("/"))
        cases = cases[index::count]
    return cases


def report(outcomes: list[Outcome], verbose: int) -> None:
    """Per-file counts, failures (with ``-v``), and the last line ``N passed, M failed, K skipped``."""
    files = sorted({o.file for o in outcomes})
    width = max([len(f) for f in files] + [10])
    for name in files:
        counts = Counter(o.status for o in outcomes if o.file == name)
        runnable = counts["pass"] + counts["fail"]
        print(f"{name:<{width}}  pass={counts['pass']:4d} fail={counts['fail']:4d} skip={counts['skip']:4d}  "
              f"({counts['pass']}/{runnable})")
        for o in outcomes:
            if o.file == name and ((o.status == "fail" and verbose) or verbose > 1):
                print(f"  [{o.status.upper()}] {o.name}: {o.reason}")
    skips = Counter(o.reason for o in outcomes if o.status == "skip")
    print("skip reasons: " + ("; ".join(f"{n} x {r}" for r, n in skips.most_common()) or "none"))
    totals = Counter(o.status for o in outcomes)
    print(f"{totals['pass']} passed, {totals['fail']} failed, {totals['skip']} skipped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", action="append", type=Path, help="an RQTT file or folder (default: all 15)")
    parser.add_argument("--filter", help="a regular expression the case names must match")
    parser.add_argument("--jobs", type=int, default=1, help="processes running cases side by side")
    parser.add_argument("--slice", help=argparse.SUPPRESS)  # i/n: this process runs every n-th case from i
    parser.add_argument("--json-report", type=Path, help="write every case's outcome here")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v: failures; -vv: every case")
    args = parser.parse_args(argv)
    paths = args.files or [RQTT_DIR]
    if args.jobs > 1:
        outcomes = _in_processes(paths, args.filter, args.jobs)
        order = {c.name: i for i, c in enumerate(load_cases(paths))}
        outcomes.sort(key=lambda o: order.get(o.name, -1))
    else:
        outcomes = run_cases(select(load_cases(paths), args.filter, args.slice))
    if args.json_report:
        args.json_report.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    report(outcomes, args.verbose)
    return 0 if all(o.status != "fail" for o in outcomes) else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        os.environ.setdefault("PYTHONHASHSEED", "0")
        sys.exit(main())
