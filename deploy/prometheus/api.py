"""Prometheus's HTTP API, asked from inside a lab machine's network namespace.

The connection is made by a thread that entered the machine's namespace, to 127.0.0.1 there:
the host's own namespace never connects to a lab address.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

from common import namespaces
from deploy.prometheus.errors import PrometheusError

DEFAULT_PORT = 9090


@dataclass(frozen=True)
class Sample:
    """One element of an instant query's answer (a scalar answer has no labels)."""

    labels: Mapping[str, str]
    value: float


def _number(promql: str, point: Any) -> float:
    try:
        _, text = point
        return float(text)
    except (TypeError, ValueError):
        raise PrometheusError(f"query {promql!r}: malformed sample {point!r}") from None


def parse_query_response(promql: str, status: int, body: bytes) -> list[Sample]:
    """The samples of an answer to /api/v1/query, or a PrometheusError saying what is wrong."""
    try:
        answer = json.loads(body)
    except ValueError:
        text = body[:200].decode(errors="replace").strip()
        raise PrometheusError(f"query {promql!r}: HTTP {status} and no JSON: {text!r}") from None
    if not isinstance(answer, dict):
        raise PrometheusError(f"query {promql!r}: unexpected answer {answer!r}")
    if answer.get("status") != "success":
        kind, error = answer.get("errorType", "error"), answer.get("error", "no reason given")
        raise PrometheusError(f"Prometheus refused query {promql!r} ({kind}): {error}")
    data = answer.get("data")
    if not isinstance(data, dict):
        raise PrometheusError(f"query {promql!r}: an answer without data: {answer!r}")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [Sample({}, _number(promql, result))]
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(
            f"query {promql!r} answers a {kind}: ask for an instant vector or a scalar"
        )
    samples = []
    for element in result:
        if not isinstance(element, dict) or not isinstance(element.get("metric"), dict):
            raise PrometheusError(f"query {promql!r}: malformed result {element!r}")
        samples.append(Sample(dict(element["metric"]), _number(promql, element.get("value"))))
    return samples


class PrometheusAPI:
    """A Prometheus listening on 127.0.0.1:`port` inside network namespace `netns`."""

    def __init__(self, netns: str, port: int = DEFAULT_PORT, timeout: float = 5.0) -> None:
        self.netns = netns
        self.port = port
        self.timeout = timeout

    def _get(self, path: str, fields: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        answer: list[tuple[int, bytes]] = []

        def work() -> None:  # a fresh pool: its sockets live in this netns only
            with urllib3.HTTPConnectionPool(
                "127.0.0.1", self.port, timeout=self.timeout, retries=False, maxsize=1
            ) as pool:
                response = pool.request("GET", path, fields=fields)
                answer.append((response.status, response.data))

        try:
            namespaces.run_in_netns(self.netns, work)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PrometheusError(
                f"Prometheus on 127.0.0.1:{self.port} in {self.netns} did not answer: {exc}"
            ) from None
        return answer[0]

    def ready(self) -> bool:
        """True once Prometheus serves queries (its /-/ready says so)."""
        try:
            status, _ = self._get("/-/ready")
        except PrometheusError:
            return False
        return status == 200

    def query(self, promql: str) -> list[Sample]:
        """The answer to an instant PromQL query, evaluated now."""
        if not promql.strip():
            raise PrometheusError("empty PromQL query")
        status, body = self._get("/api/v1/query", {"query": promql})
        return parse_query_response(promql, status, body)

    def value(self, promql: str) -> float | None:
        """The single number `promql` answers; None when it answers nothing (no series)."""
        samples = self.query(promql)
        if len(samples) > 1:
            raise PrometheusError(
                f"query {promql!r} answers {len(samples)} series, not one: aggregate it "
                "(e.g. sum(...))"
            )
        return samples[0].value if samples else None
