"""Live charts: the ``--chart`` shorthand, Altair charts made live, the offline Vega runtime and
the static picture."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time

import altair as alt
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from ipython_cells import eventually, run

from nbstream.errors import UnknownNameError
from nbstream.notebook import chart as charts
from nbstream.notebook.chart import ChartOption, ChartOptionError, parse_chart_option, split_chart_option
from nbstream.notebook.live import LiveQuery
from nbstream.notebook.magics import parse_cell_line
from nbstream.runtime.service import EngineService

COLUMNS = ["DRIVER", "WINDOWSTART", "WINDOWEND", "N", "TOTAL"]
TYPES = {"DRIVER": "STRING", "WINDOWSTART": "WINDOW", "WINDOWEND": "WINDOW", "N": "BIGINT", "TOTAL": "DOUBLE"}


def encoding(option: ChartOption) -> dict[str, dict[str, str]]:
    spec = charts.live_spec(option.build(COLUMNS, TYPES))
    return {channel: {"field": e["field"], "type": e["type"]} for channel, e in spec["encoding"].items()}


# -- the shorthand ------------------------------------------------------------------------------------
def test_the_chart_option_names_a_kind_and_columns_for_x_y_and_color() -> None:
    option = parse_chart_option(["bar", "x=DRIVER", "y=TOTAL", "color=N"])
    assert option == ChartOption("bar", (("x", "DRIVER"), ("y", "TOTAL"), ("color", "N")))
    assert parse_chart_option(["scatter", "x=N", "y=TOTAL"]).kind == "scatter"


@pytest.mark.parametrize(("words", "message"), [
    ([], "needs a kind"),
    (["pie", "x=A", "y=B"], "unknown kind, expected one of bar, line, point, scatter, area"),
    (["barr", "x=A", "y=B"], "Did you mean `bar`?"),
    (["bar", "x=A"], "needs y=COLUMN"),
    (["bar", "x=A", "y=B", "size=C"], "unknown channel 'size'"),
    (["bar", "x=A", "x=B", "y=C"], "x= given twice"),
    (["bar", "x", "y=C"], "expected CHANNEL=COLUMN"),
    (["bar", "x=A:Z", "y=C"], "unknown type :Z"),
])
def test_a_malformed_chart_option_says_what_is_wrong(words: list[str], message: str) -> None:
    with pytest.raises(ChartOptionError, match=re.escape(message)):
        parse_chart_option(words)


def test_the_chart_option_may_come_before_or_after_the_assignment() -> None:
    assert split_chart_option("live << --chart line x=N y=TOTAL")[0] == "live <<"
    line = parse_cell_line("--chart line x=N y=TOTAL live <<")
    assert line.target == "live" and line.chart == ChartOption("line", (("x", "N"), ("y", "TOTAL")))
    assert parse_cell_line("live <<").chart is None


def test_a_bad_chart_option_on_the_cell_line_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--chart pie: unknown kind"):
        parse_cell_line("--chart pie x=A y=B")


def test_columns_are_checked_against_the_result_with_a_near_miss_suggestion() -> None:
    with pytest.raises(UnknownNameError, match=re.escape("x=DRIVR: the result has no column `DRIVR`")) as error:
        parse_chart_option(["bar", "x=DRIVR", "y=TOTAL"]).build(COLUMNS, TYPES)
    assert "Did you mean `DRIVER`?" in str(error.value)


def test_column_names_match_ignoring_case() -> None:
    assert encoding(parse_chart_option(["bar", "x=driver", "y=total"]))["x"]["field"] == "DRIVER"


def test_types_follow_the_sql_types_unless_a_suffix_says_otherwise() -> None:
    assert encoding(parse_chart_option(["line", "x=WINDOWSTART", "y=TOTAL", "color=DRIVER"])) == {
        "x": {"field": "WINDOWSTART", "type": "temporal"}, "y": {"field": "TOTAL", "type": "quantitative"},
        "color": {"field": "DRIVER", "type": "nominal"}}
    assert encoding(parse_chart_option(["bar", "x=N", "y=TOTAL"]))["x"]["type"] == "ordinal"
    assert encoding(parse_chart_option(["point", "x=N:Q", "y=TOTAL:O"]))["y"]["type"] == "ordinal"


def test_each_kind_draws_its_mark() -> None:
    marks = {kind: charts.live_spec(parse_chart_option([kind, "x=N", "y=TOTAL"]).build(COLUMNS, TYPES))["mark"]
             for kind in charts.MARKS}
    assert {k: m["type"] for k, m in marks.items()} == {
        "bar": "bar", "line": "line", "point": "point", "scatter": "point", "area": "area"}


# -- any Altair chart ---------------------------------------------------------------------------------
def test_an_altair_chart_is_made_live_by_replacing_its_data_with_the_live_dataset() -> None:
    import pandas as pd

    chart = alt.Chart(pd.DataFrame({"N": [1]})).mark_line().encode(x="N:Q", y="TOTAL:Q")
    layered = alt.layer(chart, chart.mark_point())
    for spec in (charts.live_spec(chart), charts.live_spec(layered)):
        assert spec["data"] == {"name": charts.DATASET}
        assert spec["$schema"].endswith(f"/vega-lite/{alt.SCHEMA_VERSION}.json")
    assert chart.to_dict()["data"] != {"name": charts.DATASET}  # the user's chart is left alone


def test_chart_takes_only_altair_charts() -> None:
    with pytest.raises(TypeError, match="takes an Altair chart"):
        charts.live_spec({"mark": "bar"})  # type: ignore[arg-type]


# -- the Vega runtime ---------------------------------------------------------------------------------
def test_the_runtime_bundle_has_the_vega_lite_version_altair_writes() -> None:
    assert charts.vegalite_version("v6.4.1", ["5.21", "6.1", "6.4"]) == "6.4"
    assert charts.vegalite_version("v6.5.0", ["5.21", "6.1", "6.4"]) == "6.4"
    with pytest.raises(RuntimeError, match=re.escape("Vega-Lite v7.0.0 but vl-convert-python bundles only 5.21, 6.4")):
        charts.vegalite_version("v7.0.0", ["5.21", "6.4"])
    assert charts.vegalite_version().split(".")[0] == alt.SCHEMA_VERSION.lstrip("v").split(".")[0]


def test_the_runtime_is_built_without_holding_up_the_kernel() -> None:
    # vl-convert holds the GIL while it bundles (a second or more): in a thread of the kernel it
    # would freeze the cell that drew the chart and every live view's updates meanwhile.
    charts._bundle.cache_clear()
    builder = threading.Thread(target=charts.vega_bundle)
    builder.start()
    ticks = [time.perf_counter()]
    while builder.is_alive():
        time.sleep(0.01)
        ticks.append(time.perf_counter())
    assert len(ticks) > 20  # the build took a while ...
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.5  # ... and this thread ran all along
    assert "globalThis.nbstreamVega" in charts.vega_bundle()


def test_a_runtime_that_cannot_be_built_is_an_error_saying_why() -> None:
    with pytest.raises(RuntimeError) as error:
        charts._bundle("0.1")
    assert str(error.value) == ("building the Vega runtime (Vega-Lite 0.1) failed: "
                                "RuntimeError: Unsupported Vega-Lite version string 0.1")


def test_the_static_picture_draws_the_rows() -> None:
    spec = charts.live_spec(parse_chart_option(["bar", "x=DRIVER", "y=TOTAL"]).build(COLUMNS, TYPES))
    rows = [("k1", ["d1", 0, 10, 1, 5.0]), ("k2", ["d2", 0, 10, 2, 9.5])]
    svg = charts.static_svg(spec, charts.chart_records(COLUMNS, rows))
    assert svg.startswith("<svg") and svg.count('role-mark') >= 1 and ">d2<" in svg


# -- in the magics ------------------------------------------------------------------------------------
SOURCES = """%%stream
CREATE STREAM rides (driver VARCHAR KEY, fare DOUBLE)
  WITH (KAFKA_TOPIC='rides', VALUE_FORMAT='JSON', PARTITIONS=1);
"""


@pytest.fixture
def rides(shell: InteractiveShell, engine: EngineService) -> EngineService:
    assert run(shell, SOURCES)[0].success
    return engine


AGGREGATE = "SELECT driver, SUM(fare) AS total FROM rides GROUP BY driver EMIT CHANGES;"


def test_the_chart_option_draws_a_bar_chart_above_the_live_table(
        shell: InteractiveShell, rides: EngineService) -> None:
    result, _ = run(shell, f"%%stream live << --chart bar x=DRIVER y=TOTAL\n{AGGREGATE}")
    assert result.success, result.error_in_exec
    live = shell.user_ns["live"]
    assert isinstance(live, LiveQuery) and live.view.show_table
    assert live.view.spec["mark"]["type"] == "bar" and live.view.spec["data"] == {"name": "nbstream"}
    assert live.view.spec["encoding"]["x"]["field"] == "DRIVER"


def test_a_chart_of_an_unknown_column_is_an_error_and_starts_no_query(
        shell: InteractiveShell, rides: EngineService) -> None:
    result, _ = run(shell, f"%%stream --chart bar x=DRIVERS y=TOTAL\n{AGGREGATE}")
    assert not result.success
    assert "Did you mean `DRIVER`?" in str(result.error_in_exec)
    assert [q.state for q in rides.push_queries.values()] in ([], ["STOPPED"])


def test_the_chart_option_needs_a_push_query(shell: InteractiveShell, rides: EngineService) -> None:
    result, _ = run(shell, "%%stream --chart bar x=A y=B\nSHOW STREAMS;")
    assert isinstance(result.error_in_exec, UsageError)
    assert "no SELECT … EMIT CHANGES" in str(result.error_in_exec)


def test_handle_chart_gives_a_second_view_of_the_same_rows(shell: InteractiveShell, rides: EngineService) -> None:
    run(shell, f"%%stream live <<\n{AGGREGATE}")
    live = shell.user_ns["live"]
    view = live.chart(alt.Chart().mark_arc().encode(theta="TOTAL:Q", color="DRIVER:N"))
    assert view in live.views and not view.show_table and view.spec["mark"]["type"] == "arc"
    sent: list[object] = []
    view.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    rides.produce("rides", {"fare": 2.5}, key="d1")
    eventually(lambda: any(m["type"] == "delta" for m in sent))  # type: ignore[index]


def test_the_first_view_asking_for_the_vega_runtime_gets_it_as_one_buffer(
        shell: InteractiveShell, rides: EngineService) -> None:
    run(shell, f"%%stream live << --chart line x=DRIVER y=TOTAL\n{AGGREGATE}")
    live = shell.user_ns["live"]
    sent: list[tuple[object, object]] = []
    live.view.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    live.view._handle_custom_msg({"type": "vega_request"}, [])
    [(message, buffers)] = eventually(lambda: sent)
    assert message == {"type": "vega"}
    code = buffers[0].decode()  # type: ignore[index]
    assert "globalThis.nbstreamVega" in code and len(code) > 100_000
    assert not re.search(r"""import\s*\(\s*["']https?:|from\s*["']https?:""", code)  # nothing fetched


def test_a_view_asking_for_the_runtime_while_it_is_built_does_not_hold_up_the_kernel(
        shell: InteractiveShell, rides: EngineService, monkeypatch: pytest.MonkeyPatch) -> None:
    run(shell, f"%%stream live << --chart line x=DRIVER y=TOTAL\n{AGGREGATE}")
    live = shell.user_ns["live"]
    sent: list[object] = []
    live.view.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]

    def slow_failing_build() -> str:
        time.sleep(1)
        raise RuntimeError("building the Vega runtime failed: no space left")

    monkeypatch.setattr(charts, "vega_bundle", slow_failing_build)
    started = time.perf_counter()
    live.view._handle_custom_msg({"type": "vega_request"}, [])
    assert time.perf_counter() - started < 0.5 and sent == []
    assert eventually(lambda: sent) == [
        {"type": "vega_error", "message": "RuntimeError: building the Vega runtime failed: no space left"}]


# -- Altair only when a chart is drawn ----------------------------------------------------------------
LAZY_ALTAIR = f"""
import sys
from IPython.testing.globalipapp import start_ipython
from nbstream.notebook import session
shell = start_ipython()
shell.run_line_magic("load_ext", "nbstream")
session.connect("memory")
altair_imported = []
cells = ({SOURCES!r}, "%%stream table <<\\n{AGGREGATE}",
         "%%stream chart << --chart bar x=DRIVER y=TOTAL\\n{AGGREGATE}")
for cell in cells:
    assert shell.run_cell(cell).success, cell
    altair_imported.append("altair" in sys.modules)
session.disconnect()
print(altair_imported)
"""


def test_altair_is_imported_only_when_a_chart_is_drawn() -> None:
    # Importing Altair takes seconds (more in a busy kernel): %load_ext and live tables do without it.
    done = subprocess.run([sys.executable, "-c", LAZY_ALTAIR], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[False, False, True]"
