"""The lab's Prometheus: its configuration, the targets file and answers to PromQL queries."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.netns_driver import Machine
from deploy.prometheus.api import PrometheusAPI, Sample, parse_query_response
from deploy.prometheus.errors import PrometheusError
from deploy.prometheus.server import CONFIG
from deploy.prometheus.targets import file_sd_groups, targets_for, write_targets
from deploy.state import MachineRecord, Storage

PROMTOOL = "/usr/bin/promtool"


def _machine(tmp_path: Path, name: str, address: str) -> Machine:
    return Machine(Storage(tmp_path), MachineRecord(name, "lab", address))


def test_targets_are_each_machines_lab_address_on_the_metrics_port(tmp_path: Path) -> None:
    machines = [_machine(tmp_path, "lab-node1", "10.77.0.10/16")]
    machines.append(_machine(tmp_path, "lab-node2", "10.77.0.11/16"))
    assert targets_for(machines) == {"lab-node1": "10.77.0.10:9100", "lab-node2": "10.77.0.11:9100"}
    assert targets_for(machines[:1], port=9200) == {"lab-node1": "10.77.0.10:9200"}


def test_the_targets_file_labels_every_target_with_its_machine(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    write_targets(path, {"lab-node2": "10.77.0.11:9100", "lab-node1": "10.77.0.10:9100"})
    assert json.loads(path.read_text()) == [
        {"targets": ["10.77.0.10:9100"], "labels": {"machine": "lab-node1"}},
        {"targets": ["10.77.0.11:9100"], "labels": {"machine": "lab-node2"}},
    ]
    write_targets(path, {"lab-node1": "[::1]:9100"})  # replaced whole, an IPv6 target is fine
    assert json.loads(path.read_text())[0]["targets"] == ["[::1]:9100"]
    assert [p.name for p in tmp_path.iterdir()] == ["targets.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        ({"lab-node1": "10.77.0.10"}, "'lab-node1' is '10.77.0.10', not an IP address and port"),
        ({"lab-node1": "node1:9100"}, "not an IP address and port"),
        ({"lab-node1": "10.77.0.10:0"}, "not an IP address and port"),
        ({"lab-node1": "10.77.0.10:65536"}, "not an IP address and port"),
        ({"lab-node1": "10.77.0.10:http"}, "not an IP address and port"),
        ({"Lab Node": "10.77.0.10:9100"}, "invalid machine name 'Lab Node'"),
    ],
)
def test_bad_targets_are_refused_and_the_old_file_kept(
    tmp_path: Path, targets: dict[str, str], problem: str
) -> None:
    path = tmp_path / "targets.json"
    write_targets(path, {"lab-node1": "10.77.0.10:9100"})
    before = path.read_text()
    with pytest.raises(PrometheusError, match=problem):
        write_targets(path, targets)
    assert path.read_text() == before


def test_an_empty_lab_has_no_targets() -> None:
    assert file_sd_groups({}) == []


def test_promtool_accepts_the_configuration_with_a_written_targets_file(tmp_path: Path) -> None:
    shutil.copyfile(CONFIG, tmp_path / "prometheus.yml")
    write_targets(tmp_path / "targets.json", {"lab-node1": "10.77.0.10:9100"})
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr


def _answer(result_type: str, result: object) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": result_type, "result": result}}
    ).encode()


def test_a_vector_answer_gives_one_sample_per_series() -> None:
    body = _answer(
        "vector",
        [
            {"metric": {"machine": "lab-node1"}, "value": [1700000000.1, "1"]},
            {"metric": {"machine": "lab-node2"}, "value": [1700000000.1, "NaN"]},
        ],
    )
    first, second = parse_query_response("up", 200, body)
    assert first == Sample({"machine": "lab-node1"}, 1.0)
    assert second.labels == {"machine": "lab-node2"} and second.value != second.value  # NaN


def test_a_scalar_answer_is_one_unlabelled_sample() -> None:
    assert parse_query_response("1+1", 200, _answer("scalar", [1700000000, "2"])) == [
        Sample({}, 2.0)
    ]


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"1:4: parse error"}',
            r"Prometheus refused query 'up ==' \(bad_data\): 1:4: parse error",
        ),
        (503, b"Service Unavailable", "HTTP 503 and no JSON: 'Service Unavailable'"),
        (200, b"[]", "unexpected answer"),
        (200, b'{"status":"success"}', "an answer without data"),
        (200, _answer("matrix", []), "answers a matrix: ask for an instant vector or a scalar"),
        (200, _answer("vector", [{"value": [1, "1"]}]), "malformed result"),
        (200, _answer("vector", [{"metric": {}, "value": [1, "one"]}]), "malformed sample"),
        (200, _answer("scalar", "2"), "malformed sample"),
    ],
)
def test_bad_answers_raise_saying_what_is_wrong(status: int, body: bytes, problem: str) -> None:
    with pytest.raises(PrometheusError, match=problem):
        parse_query_response("up ==", status, body)


class _Answering(PrometheusAPI):
    """The API with its HTTP request replaced by a canned answer."""

    def __init__(self, body: bytes) -> None:
        super().__init__("lab-node1")
        self.body = body
        self.asked: list[tuple[str, dict[str, str] | None]] = []

    def _get(self, path: str, fields: object = None) -> tuple[int, bytes]:
        self.asked.append((path, dict(fields) if isinstance(fields, dict) else None))
        return 200, self.body


def test_value_is_the_one_number_a_query_answers() -> None:
    api = _Answering(_answer("vector", [{"metric": {}, "value": [1, "3"]}]))
    assert api.value('sum(shoal_agent_tasks{state="running"})') == 3
    assert api.asked == [("/api/v1/query", {"query": 'sum(shoal_agent_tasks{state="running"})'})]
    assert _Answering(_answer("vector", [])).value("absent_metric") is None


def test_value_refuses_several_series_and_query_refuses_an_empty_one() -> None:
    series = [{"metric": {"machine": m}, "value": [1, "1"]} for m in ("a", "b")]
    api = _Answering(_answer("vector", series))
    with pytest.raises(PrometheusError, match="answers 2 series, not one: aggregate it"):
        api.value("up")
    with pytest.raises(PrometheusError, match="empty PromQL query"):
        api.query("  ")
    assert len(api.asked) == 1  # the empty query was never sent


def test_a_missing_namespace_is_a_clear_error_not_a_crash() -> None:
    api = PrometheusAPI("no-such-machine-netns", timeout=0.5)
    with pytest.raises(PrometheusError, match="in no-such-machine-netns did not answer"):
        api.query("up")
    assert api.ready() is False
