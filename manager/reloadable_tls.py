"""Server TLS credentials whose key and certificate can be replaced while serving.

A manager renews its certificate without restarting its gRPC servers: gRPC asks the fetcher
for the current configuration at each new handshake (from its own threads), and the fetcher
answers with the new one once after each `replace`. Established connections keep theirs.
"""

from __future__ import annotations

import threading

import grpc


class ReloadableServerCredentials:
    def __init__(self, cert_pem: bytes, key_pem: bytes, client_root_pem: bytes | None) -> None:
        """`client_root_pem`: require and verify client certificates issued by that root
        (the cluster port); None: do not ask for one (the join port)."""
        self._root = client_root_pem
        self._lock = threading.Lock()
        self._current = self._configuration(cert_pem, key_pem)
        self._served: grpc.ServerCertificateConfiguration | None = self._current
        self.credentials: grpc.ServerCredentials = grpc.dynamic_ssl_server_credentials(
            self._current, self._fetch, require_client_authentication=client_root_pem is not None
        )

    def _configuration(
        self, cert_pem: bytes, key_pem: bytes
    ) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], self._root)

    def replace(self, cert_pem: bytes, key_pem: bytes) -> None:
        """New handshakes present this certificate from now on."""
        configuration = self._configuration(cert_pem, key_pem)
        with self._lock:
            self._current = configuration

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:  # gRPC's threads
        with self._lock:
            if self._served is self._current:
                return None  # unchanged
            self._served = self._current
            return self._current
