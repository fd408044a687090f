"""swarmctl secret and config: create NAME FILE|-, ls, inspect, rm (same shape, two kinds)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from shoal.v1 import control_pb2, specs_pb2
from swarmctl.commands.common import control_for, list_options, show_list
from swarmctl.errors import SwarmctlError
from swarmctl.output import humanize_since, print_json
from swarmctl.resolve import CONFIG, SECRET, Kind, list_all, resolve
from swarmctl.service_flags import parse_key_value


@dataclass(frozen=True)
class BlobKind:
    """How Control names the calls and fields of one kind (secret or config)."""

    kind: Kind
    title: str
    spec: type[Any]
    create: type[Any]
    remove: type[Any]


def _read_data(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise SwarmctlError(f"cannot read {source}: {error.strerror}") from None


def make_group(blob: BlobKind) -> click.Group:
    noun = blob.kind.noun

    @click.group(noun, help=f"Manage {noun}s.")
    def group() -> None:
        pass

    @group.command(help=f"Create a {noun} from FILE, or from standard input with -.")
    @click.argument("name")
    @click.argument("source", metavar="FILE|-")
    @click.option("--label", multiple=True, help="key=value (repeatable).")
    @click.pass_context
    def create(ctx: click.Context, name: str, source: str, label: tuple[str, ...]) -> None:
        spec = blob.spec(data=_read_data(source))
        spec.annotations.name = name
        spec.annotations.labels.update(parse_key_value(item, "--label") for item in label)
        with control_for(ctx) as control:
            created = control.call(f"Create{blob.title}", blob.create(spec=spec))
            click.echo(getattr(created, noun).id)

    @group.command("ls", help=f"List {noun}s.")
    @list_options
    @click.pass_context
    def ls(ctx: click.Context, quiet: bool, output_format: str) -> None:
        with control_for(ctx) as control:
            found = sorted(list_all(control, blob.kind), key=lambda o: o.spec.annotations.name)
        now_s = time.time()
        show_list(
            found,
            quiet,
            output_format,
            ["ID", "NAME", "CREATED"],
            lambda o: [
                o.id,
                o.spec.annotations.name,
                humanize_since(o.meta.created_at, now_s),
            ],
        )

    @group.command(help=f"Show {noun}s (JSON).")
    @click.argument("references", nargs=-1, required=True)
    @click.pass_context
    def inspect(ctx: click.Context, references: tuple[str, ...]) -> None:
        with control_for(ctx) as control:
            print_json([resolve(control, blob.kind, reference) for reference in references])

    @group.command(help=f"Remove {noun}s (refused while a service refers to one).")
    @click.argument("references", nargs=-1, required=True)
    @click.pass_context
    def rm(ctx: click.Context, references: tuple[str, ...]) -> None:
        with control_for(ctx) as control:
            for reference in references:
                found = resolve(control, blob.kind, reference)
                control.call(f"Remove{blob.title}", blob.remove(**{f"{noun}_id": found.id}))
                click.echo(found.spec.annotations.name)

    return group


secret = make_group(
    BlobKind(
        SECRET,
        "Secret",
        specs_pb2.SecretSpec,
        control_pb2.CreateSecretRequest,
        control_pb2.RemoveSecretRequest,
    )
)
config = make_group(
    BlobKind(
        CONFIG,
        "Config",
        specs_pb2.ConfigSpec,
        control_pb2.CreateConfigRequest,
        control_pb2.RemoveConfigRequest,
    )
)
