"""The datagen connector on its own: properties, pacing by max.interval, iterations, batches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nbstream.connectors.datagen import MAX_BATCH, DatagenConnector
from nbstream.errors import CatalogError

START = 1_700_000_000_000


def datagen(**props: object) -> DatagenConnector:
    properties = {"connector.class": "datagen", "kafka.topic": "t", "quickstart": "pageviews", **props}
    return DatagenConnector("GEN", properties)  # type: ignore[arg-type]


def drain(connector: DatagenConnector, until_ms: int, step_ms: int) -> np.ndarray:
    """Step the connector every ``step_ms`` up to ``until_ms``; the times of all records made."""
    times = []
    for now in range(START, until_ms + 1, step_ms):
        generated = connector.step(now)
        if generated is not None:
            assert (generated.times <= now).all()
            times.append(generated.times)
    return np.concatenate(times) if times else np.empty(0, dtype=np.int64)


def test_missing_kafka_topic_is_an_error_naming_the_property() -> None:
    with pytest.raises(CatalogError, match=r"connector GEN: datagen needs 'kafka\.topic'"):
        DatagenConnector("GEN", {"connector.class": "datagen", "quickstart": "users"})


def test_unknown_quickstart_lists_the_known_ones_and_suggests_the_nearest() -> None:
    with pytest.raises(CatalogError, match=r"unknown quickstart 'ride' \(known: pageviews, users, orders, "
                                           r"stocks, rides\)\. Did you mean `rides`\?"):
        datagen(quickstart="ride")


def test_misspelt_property_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(CatalogError, match=r"unknown datagen property 'max\.intervall'\. Did you mean `max\.interval`"):
        datagen(**{"max.intervall": 50})


@pytest.mark.parametrize("value", ["fast", 1.5, True])
def test_non_integer_max_interval_is_an_error(value: object) -> None:
    with pytest.raises(CatalogError, match=r"'max\.interval' must be an integer"):
        datagen(**{"max.interval": value})


def test_negative_max_interval_is_an_error() -> None:
    with pytest.raises(CatalogError, match=r"'max\.interval' must be at least 0"):
        datagen(**{"max.interval": -5})


def test_properties_of_ksqldb_tutorials_are_accepted_as_strings() -> None:
    connector = datagen(**{"max.interval": "100", "iterations": "7", "tasks.max": "1",
                           "key.converter": "org.apache.kafka.connect.storage.StringConverter"})
    assert (connector.config.max_interval_ms, connector.config.iterations) == (100, 7)


def test_defaults_are_datagens() -> None:
    config = datagen().config
    assert (config.max_interval_ms, config.iterations) == (500, 1_000_000)


def test_iterations_below_one_mean_unlimited() -> None:
    assert datagen(iterations=0).config.iterations is None


def test_each_record_is_written_when_it_is_due_not_before() -> None:
    connector = datagen(**{"max.interval": 1000, "random.seed": 3})
    first = connector.step(START)
    assert first is None and connector.next_due_ms is not None and connector.next_due_ms > START
    due = connector.next_due_ms
    assert connector.step(due - 1) is None
    generated = connector.step(due)
    assert generated is not None and generated.times.tolist() == [due]


def test_gaps_between_records_are_below_max_interval_and_average_half_of_it() -> None:
    connector = datagen(**{"max.interval": 50, "iterations": 100_000})
    times = drain(connector, START + 60_000, step_ms=250)
    gaps = np.diff(times)
    assert gaps.min() >= 0 and gaps.max() < 50
    assert 22 < gaps.mean() < 27  # uniform on [0, 50): mean 24.5
    assert len(times) == connector.produced


def test_records_come_in_one_batch_per_step_with_everything_due() -> None:
    connector = datagen(**{"max.interval": 10, "iterations": 100_000})
    connector.step(START)
    generated = connector.step(START + 10_000)
    assert generated is not None and generated.size > 1000  # ten seconds of records at once
    assert connector.next_due_ms is not None and connector.next_due_ms > START + 10_000


def test_pacing_does_not_depend_on_how_often_the_loop_steps() -> None:
    often = drain(datagen(**{"max.interval": 40, "iterations": 100_000}), START + 20_000, step_ms=7)
    rarely = drain(datagen(**{"max.interval": 40, "iterations": 100_000}), START + 20_000, step_ms=5_000)
    assert abs(len(often) - len(rarely)) < 0.1 * len(often)


def test_iterations_are_honoured_exactly_then_the_connector_is_finished() -> None:
    connector = datagen(**{"max.interval": 20, "iterations": 1234})
    times = drain(connector, START + 600_000, step_ms=1_000)
    assert len(times) == 1234 and connector.produced == 1234 and connector.finished
    assert connector.step(START + 10**9) is None


def test_a_catch_up_is_split_into_batches_of_at_most_max_batch() -> None:
    connector = datagen(**{"max.interval": 0, "iterations": 3 * MAX_BATCH})
    sizes = []
    for now in range(START, START + 10):
        generated = connector.step(now)
        if generated is not None:
            sizes.append(generated.size)
    assert sizes == [MAX_BATCH] * 3


def test_progress_resumes_counters_and_state() -> None:
    first = datagen(quickstart="stocks", **{"max.interval": 20, "iterations": 500})
    drain(first, START + 3_000, step_ms=500)
    second = datagen(quickstart="stocks", **{"max.interval": 20, "iterations": 500})
    second.resume(first.progress())
    assert second.produced == first.produced and second.state == first.state
    assert json.loads(second.progress())["produced"] == first.produced


def test_resuming_does_not_make_up_for_time_the_engine_was_stopped() -> None:
    first = datagen(**{"max.interval": 20, "iterations": 100_000})
    drain(first, START + 1_000, step_ms=500)
    second = datagen(**{"max.interval": 20, "iterations": 100_000})
    second.resume(first.progress())
    generated = second.step(START + 3_600_000)
    assert generated is None or generated.size == 1


def test_keys_are_the_key_field_as_a_string() -> None:
    connector = datagen(quickstart="orders", **{"max.interval": 0, "iterations": 5})
    generated = connector.step(START)
    assert generated is not None
    assert generated.keys.to_pylist() == [str(i) for i in generated.columns["orderid"].to_pylist()]


def test_the_same_name_and_seed_generate_the_same_records() -> None:
    a, b = datagen(**{"random.seed": 7, "max.interval": 0}), datagen(**{"random.seed": 7, "max.interval": 0})
    ga, gb = a.step(START), b.step(START)
    assert ga is not None and gb is not None
    assert ga.columns["userid"].to_pylist() == gb.columns["userid"].to_pylist()
