"""Generate the Python code of Shoal's gRPC/protobuf API.

Usage: ``python proto/gen.py [--out DIR]``

Compiles every ``proto/shoal/v1/*.proto`` with the protoc bundled in
grpcio-tools (in process, no subprocess) into, for each ``NAME.proto``:
``NAME_pb2.py``, ``NAME_pb2_grpc.py`` and the mypy-protobuf stubs
``NAME_pb2.pyi`` and ``NAME_pb2_grpc.pyi``. They are written under
``DIR/shoal/v1/``; DIR defaults to the ``proto/`` directory, so the generated
files land beside the ``.proto`` files, where they are committed.

The output is deterministic: the same inputs give the same bytes. Files are
generated into a temporary directory first, so a failing protoc leaves DIR
untouched; generated files left over from a removed ``.proto`` are deleted,
and unchanged files are not rewritten.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE = Path("shoal", "v1")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")


class GenerationError(Exception):
    """Raised when the API cannot be generated; the message says why."""


def proto_files() -> list[Path]:
    """Return the API's .proto files, sorted, as absolute paths."""
    return sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))


def is_generated(path: Path) -> bool:
    """Tell whether a file name is one that this script generates."""
    return path.name.endswith(GENERATED_SUFFIXES)


def plugin(name: str) -> Path:
    """Find a protoc plugin installed next to the running interpreter."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise GenerationError(
            f"{name} not found at {path}: install the dev extras (pip install -e '.[dev]')"
        )
    return path


def run_protoc(out: Path) -> None:
    """Run protoc over all .proto files, writing everything under ``out``."""
    protos = proto_files()
    if not protos:
        raise GenerationError(f"no .proto files in {PROTO_ROOT / PACKAGE}")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}",
        *(str(p) for p in protos),
    ]
    status = protoc.main(args)
    if status != 0:
        raise GenerationError(f"protoc failed with exit status {status} (see its errors above)")


def generate(out: Path) -> list[Path]:
    """Generate the API under ``out/shoal/v1``; return the generated files' paths."""
    target = out / PACKAGE
    with tempfile.TemporaryDirectory(prefix="shoal-proto-") as tmp:
        run_protoc(Path(tmp))
        fresh = {p.name: p.read_bytes() for p in (Path(tmp) / PACKAGE).iterdir() if is_generated(p)}
    expected = {p.stem + suffix for p in proto_files() for suffix in GENERATED_SUFFIXES}
    if set(fresh) != expected:
        missing = sorted(expected - set(fresh))
        extra = sorted(set(fresh) - expected)
        raise GenerationError(f"unexpected protoc output: missing {missing}, extra {extra}")
    target.mkdir(parents=True, exist_ok=True)
    for stale in sorted(p for p in target.iterdir() if is_generated(p) and p.name not in fresh):
        stale.unlink()
    written = []
    for name, data in sorted(fresh.items()):
        path = target / name
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=PROTO_ROOT,
        help="directory under which shoal/v1/ is written (default: %(default)s)",
    )
    options = parser.parse_args(argv)
    try:
        written = generate(options.out.resolve())
    except GenerationError as error:
        print(f"gen.py: error: {error}", file=sys.stderr)
        return 1
    print(f"gen.py: {len(written)} files in {options.out / PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
