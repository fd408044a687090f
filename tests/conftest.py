"""Loaded before any test module: `common` first, so that gRPC's fork support is off before
grpc is imported (see common/__init__.py); the tests fork swarmd, swarmctl and nft while
their own gRPC calls are in flight."""

import common  # noqa: F401
