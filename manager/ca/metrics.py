"""The CA's Prometheus metrics (prometheus-client), exported by swarmd."""

from __future__ import annotations

from prometheus_client import Counter

CERTIFICATES_ISSUED = Counter(
    "shoal_ca_certificates_issued",
    "Node certificates issued, by role and reason (join or renewal)",
    ["role", "reason"],
)
REQUESTS_REFUSED = Counter(
    "shoal_ca_certificate_requests_refused",
    "Joins and renewals refused, by the error that refused them",
    ["reason"],
)
RPCS_DENIED = Counter(
    "shoal_ca_rpcs_denied", "Calls refused by role authorization, by gRPC status", ["code"]
)
