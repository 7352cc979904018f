"""Live charts: the ``--chart KIND x=COL y=COL [color=COL]`` shorthand, any Altair chart made live,
the offline Vega runtime, and a static SVG of the latest rows.

A live chart is a Vega-Lite spec whose data is the named dataset :data:`DATASET`; the view embeds
it once and applies each delta of the result as a Vega changeset (rows carry the result's key in
``__key``). The Vega, Vega-Lite and vega-embed JavaScript comes from the ``vl-convert-python``
package (no network), in the Vega-Lite version the installed Altair writes, and is sent once per
page: the first view that needs it asks the kernel, later views reuse it from ``globalThis``.

Altair and vl-convert are imported only when a chart is drawn: importing Altair takes seconds
(its JSON-schema validation), so ``%load_ext nbstream`` and table-only queries do without it.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbstream.errors import UnknownNameError, did_you_mean

if TYPE_CHECKING:
    import altair as alt

#: The name of the Vega dataset holding a live chart's rows.
DATASET = "nbstream"
#: Where each row of a live chart keeps its key (a view removes rows by it).
KEY_FIELD = "__key"
#: ``--chart`` kinds and the Vega-Lite marks they draw.
MARKS = {"bar": "bar", "line": "line", "point": "point", "scatter": "point", "area": "area"}
CHANNELS = ("x", "y", "color")
#: Vega-Lite measurement types by ``:SUFFIX`` (as in Altair's shorthand).
TYPE_SUFFIXES = {"Q": "quantitative", "T": "temporal", "O": "ordinal", "N": "nominal"}
_NUMERIC = {"INTEGER", "BIGINT", "DOUBLE", "DECIMAL"}
_TEMPORAL = {"TIMESTAMP", "DATE", "TIME", "WINDOW"}


class ChartOptionError(ValueError):
    """The ``--chart`` option of a ``%%stream`` line is malformed."""


@dataclass(frozen=True)
class ChartOption:
    """What ``--chart KIND x=COL y=COL [color=COL]`` asks for; a column may end in ``:Q|T|O|N``."""

    kind: str
    encodings: tuple[tuple[str, str], ...]

    def build(self, columns: Sequence[str], types: Mapping[str, str]) -> alt.Chart:
        """The Altair chart over a result with ``columns`` (SQL type names in ``types``); an
        unknown column is an :class:`UnknownNameError` with a near-miss suggestion."""
        import altair as alt

        encoding = {}
        for channel, reference in self.encodings:
            name, _, suffix = reference.partition(":")
            column = resolve_column(name, columns, channel)
            kind = TYPE_SUFFIXES[suffix.upper()] if suffix else measurement(types.get(column), channel, self.kind)
            encoding[channel] = {"field": column, "type": kind}
        chart = getattr(alt.Chart(alt.NamedData(name=DATASET)), f"mark_{MARKS[self.kind]}")()
        channels = {channel: _channel(channel, spec) for channel, spec in encoding.items()}
        return chart.encode(**channels).properties(width=480, height=260)


def _channel(channel: str, spec: dict[str, str]) -> Any:
    import altair as alt

    kinds = {"x": alt.X, "y": alt.Y, "color": alt.Color}
    return kinds[channel](field=spec["field"], type=spec["type"])


def parse_chart_option(tokens: Sequence[str]) -> ChartOption:
    """``["bar", "x=DRIVER", "y=TOTAL"]`` (the words after ``--chart``) as a :class:`ChartOption`."""
    if not tokens:
        raise ChartOptionError(f"--chart needs a kind ({'|'.join(MARKS)}) and x=COLUMN y=COLUMN")
    kind, *assignments = tokens
    if kind.lower() not in MARKS:
        raise ChartOptionError(f"--chart {kind}: unknown kind, expected one of {', '.join(MARKS)}."
                               f"{did_you_mean(kind, MARKS)}")
    encodings: dict[str, str] = {}
    for assignment in assignments:
        channel, equals, column = assignment.partition("=")
        channel = channel.lower()
        if not equals or not column:
            raise ChartOptionError(f"--chart: expected CHANNEL=COLUMN, got {assignment!r}")
        if channel not in CHANNELS:
            raise ChartOptionError(f"--chart: unknown channel {channel!r}, expected {', '.join(CHANNELS)}")
        if channel in encodings:
            raise ChartOptionError(f"--chart: {channel}= given twice")
        suffix = column.partition(":")[2]
        if suffix and suffix.upper() not in TYPE_SUFFIXES:
            raise ChartOptionError(f"--chart {channel}={column}: unknown type :{suffix}, expected :Q, :T, :O or :N")
        encodings[channel] = column
    missing = [c for c in ("x", "y") if c not in encodings]
    if missing:
        raise ChartOptionError(f"--chart {kind} needs {' and '.join(f'{c}=COLUMN' for c in missing)}")
    return ChartOption(kind.lower(), tuple(encodings.items()))


def split_chart_option(line: str) -> tuple[str, ChartOption | None]:
    """``line`` without its ``--chart …`` part, and that part parsed (None when absent)."""
    words = shlex.split(line)
    if "--chart" not in words:
        return line, None
    start = words.index("--chart")
    end = start + 1
    while end < len(words) and not words[end].startswith("--") and (end == start + 1 or "=" in words[end]):
        end += 1
    rest = words[:start] + words[end:]
    return " ".join(rest), parse_chart_option(words[start + 1:end])


def resolve_column(name: str, columns: Sequence[str], channel: str) -> str:
    """The result column ``name`` refers to (exactly, or ignoring case when that is unambiguous)."""
    if name in columns:
        return name
    folded = [c for c in columns if c.upper() == name.upper()]
    if len(folded) == 1:
        return folded[0]
    raise UnknownNameError(f"--chart {channel}={name}: the result has no column `{name}` "
                           f"(columns: {', '.join(columns)}).{did_you_mean(name, columns)}")


def measurement(sql_type: str | None, channel: str, kind: str) -> str:
    """The Vega-Lite type of a column: times are temporal, numbers quantitative — except the x of a
    bar chart, which is a category — and everything else nominal."""
    if sql_type in _TEMPORAL:
        return "temporal"
    if sql_type in _NUMERIC:
        return "ordinal" if channel == "x" and MARKS[kind] == "bar" else "quantitative"
    return "nominal"


def live_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The Vega-Lite spec of ``chart`` with its data replaced by the live dataset."""
    import altair as alt

    if not isinstance(chart, alt.TopLevelMixin):
        raise TypeError(f"chart() takes an Altair chart (alt.Chart(...), a layer or a concat), "
                        f"not {type(chart).__name__}")
    live = chart.copy(deep=True)  # type: ignore[attr-defined]  # every Altair chart has copy()
    live.data = alt.NamedData(name=DATASET)
    spec: dict[str, Any] = live.to_dict()
    return spec


def vegalite_version(schema: str | None = None, available: Sequence[str] | None = None) -> str:
    """The Vega-Lite version of the runtime bundle: the one Altair's ``schema`` (``v6.4.1``, by
    default the installed Altair's) names, as ``MAJOR.MINOR``; an error when ``vl-convert-python``
    has no such version."""
    if schema is None:
        import altair as alt

        schema = alt.SCHEMA_VERSION
    import vl_convert

    versions = list(available) if available is not None else list(vl_convert.get_vegalite_versions())
    wanted = ".".join(schema.lstrip("v").split(".")[:2])
    if wanted in versions:
        return wanted
    same_major = [v for v in versions if v.split(".")[0] == wanted.split(".")[0]]
    if same_major:
        return max(same_major, key=lambda v: tuple(int(p) for p in v.split(".")))
    raise RuntimeError(f"Altair writes Vega-Lite {schema} but vl-convert-python bundles only "
                       f"{', '.join(versions)}: upgrade vl-convert-python")


_BUNDLE_SNIPPET = "globalThis.nbstreamVega = { vegaEmbed, vega, vegaLite };"
_BUILD_BUNDLE = ("import sys, vl_convert; "
                 "sys.stdout.buffer.write(vl_convert.javascript_bundle(sys.argv[1], vl_version=sys.argv[2]).encode())")
_bundle_lock = threading.Lock()


@functools.cache
def _bundle(version: str) -> str:
    # In a child process: vl-convert holds the GIL while it bundles (a second or more), which would
    # freeze the kernel (and the cell that drew the chart) if it ran in one of the kernel's threads.
    built = subprocess.run([sys.executable, "-c", _BUILD_BUNDLE, _BUNDLE_SNIPPET, version],
                           capture_output=True, check=False, timeout=300)
    if built.returncode != 0:
        raise RuntimeError(f"building the Vega runtime (Vega-Lite {version}) failed: "
                           f"{_exception_line(built.stderr.decode(errors='replace')) or built.returncode}")
    return built.stdout.decode()


def _exception_line(stderr: str) -> str:
    """The ``SomeError: message`` line of a Python traceback (a Rust backtrace may follow it)."""
    lines = [line for line in stderr.splitlines() if re.match(r"\w+(Error|Exception)\b", line)]
    return lines[-1] if lines else ""


def vega_bundle() -> str:
    """The offline Vega runtime as one script that sets ``globalThis.nbstreamVega`` (built once per
    process, in a child process: a second or two)."""
    with _bundle_lock:
        return _bundle(vegalite_version())


def prepare_vega_bundle() -> None:
    """Build the bundle in a thread now, so the first chart's view gets it without the wait."""
    threading.Thread(target=vega_bundle, name="nbstream-vega-bundle", daemon=True).start()


def chart_records(columns: Sequence[str], rows: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Rows keyed by the result's key as Vega data (one object per row, ``__key`` included)."""
    return [{KEY_FIELD: key, **dict(zip(columns, row, strict=True))} for key, row in rows]


def static_svg(spec: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The chart drawn with ``records`` as an SVG, for notebooks shown without a kernel."""
    import vl_convert

    drawn = dict(spec)
    drawn["datasets"] = {**spec.get("datasets", {}), DATASET: records}
    return str(vl_convert.vegalite_to_svg(drawn, vl_version=vegalite_version()))
