"""The image commands of `shoal`: pull, push, images, tag, rmi, history, inspect.

Each takes the EngineConfig from the group (`ctx.obj`). Errors a user can cause end as one
line on stderr and exit status 1. Pulls and pushes show a progress line per layer when stdout
is a terminal, and nothing but their result otherwise or with -q.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from common.errors import InvalidValue
from common.image_reference import Reference, parse
from common.tables import print_table
from common.timeparse import age
from common.units import human_size
from runtime.config import EngineConfig
from runtime.image.errors import ImageError, ImageNotFound
from runtime.image.image import Image
from runtime.image.progress import ProgressEvent
from runtime.image.store import ImageStore

if TYPE_CHECKING:
    from rich.progress import TaskID

P = ParamSpec("P")
R = TypeVar("R")

# Finders for `shoal inspect NAME`: each returns the object's JSON, or None when it does not
# know NAME; the first that knows it answers. The CLI adds the containers' finder.
Finder = Callable[[EngineConfig, str], dict[str, Any] | None]


def _in_use(config: EngineConfig) -> Callable[[str], bool]:
    def in_use(image_id: str) -> bool:
        from runtime.engine_factory import make_engine

        return any(c.get("Image") == image_id for c in make_engine(config).list(all=True))

    return in_use


def image_store(config: EngineConfig) -> ImageStore:
    """The store the commands use; removal asks the container engine what is in use."""
    return ImageStore(config, in_use=_in_use(config))


def _fail(message: str) -> None:
    click.echo(f"shoal: error: {message}", err=True)


def clean_errors(command: Callable[P, R]) -> Callable[P, R]:
    """An ImageError or InvalidValue (or an OSError on the state dir) ends as one line and
    exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (ImageError, InvalidValue) as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        sys.exit(1)

    return wrapper


class LayerProgress:
    """A rich progress display, one line per blob; safe to feed from several threads."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn  # ~25 ms

        self.progress = Progress(
            TextColumn("{task.fields[item]}"),
            TextColumn("{task.description:<22}"),
            BarColumn(bar_width=30),
            DownloadColumn(),
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> LayerProgress:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        with self.lock:
            task = self.tasks.get(event.item)
            if task is None:
                task = self.progress.add_task(event.status, item=event.item, total=None)
                self.tasks[event.item] = task
        total = event.total or None
        self.progress.update(task, description=event.status, completed=event.current, total=total)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[ProgressEvent], None] | None]:
    if quiet or not sys.stdout.isatty():
        yield None
        return
    with LayerProgress() as display:
        yield display


def pull_image(config: EngineConfig, ref: str, quiet: bool) -> Image:
    store = image_store(config)
    with _progress(quiet) as progress:
        image = store.pull(ref, progress)
    return image


def image_for_run(config: EngineConfig, ref: str, quiet: bool = False) -> Image:
    """The local image `ref`, pulled first when it is not here (as `docker run` does)."""
    try:
        return image_store(config).get(ref)
    except ImageNotFound:
        if not quiet:
            click.echo(f"Unable to find image '{ref}' locally", err=True)
        return pull_image(config, ref, quiet)


def inspect_image(config: EngineConfig, ref: str) -> dict[str, Any]:
    """The image `ref` as `docker image inspect` shows it; ImageNotFound if absent."""
    return image_store(config).inspect(ref)


def find_image(config: EngineConfig, name: str) -> dict[str, Any] | None:
    try:
        return inspect_image(config, name)
    except ImageNotFound:
        return None


FINDERS: list[Finder] = [find_image]


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only the image's name.")
@click.argument("image")
@click.pass_obj
@clean_errors
def pull(config: EngineConfig, quiet: bool, image: str) -> None:
    """Pull an image from a registry."""
    pulled = pull_image(config, image, quiet)
    name = parse(image)
    if quiet:
        click.echo(str(name))
        return
    click.echo(f"Pulled {name.familiar}: {pulled.id}")


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only the pushed manifest's digest.")
@click.argument("image")
@click.pass_obj
@clean_errors
def push(config: EngineConfig, quiet: bool, image: str) -> None:
    """Push an image to the registry its name says."""
    with _progress(quiet) as progress:
        digest = image_store(config).push(image, progress)
    click.echo(digest if quiet else f"{parse(image).familiar}: digest: {digest}")


def _image_rows(images: list[Image], repository: str | None) -> list[dict[str, Any]]:
    wanted = parse(repository).repository if repository else None
    rows = []
    for image in images:
        names: list[Reference | None] = [parse(t) for t in image.repo_tags] or [None]
        for name in names:
            if wanted and (name is None or name.repository != wanted):
                continue
            rows.append(
                {
                    "Repository": name.familiar_repository if name else "<none>",
                    "Tag": (name.tag or "<none>") if name else "<none>",
                    "ID": image.id,
                    "CreatedAt": image.created,
                    "Size": image.size,
                }
            )
    return rows


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only image ids.")
@click.option("--no-trunc", is_flag=True, help="Show whole image ids.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: one JSON object per image name.",
)
@click.argument("repository", required=False)
@click.pass_obj
@clean_errors
def images(
    config: EngineConfig, quiet: bool, no_trunc: bool, fmt: str, repository: str | None
) -> None:
    """List images."""
    rows = _image_rows(image_store(config).list(), repository)
    if quiet:
        ids = dict.fromkeys(r["ID"] if no_trunc else r["ID"][7:19] for r in rows)
        for image_id in ids:
            click.echo(image_id)
    elif fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
    else:
        print_table(
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            [
                [
                    r["Repository"],
                    r["Tag"],
                    r["ID"] if no_trunc else r["ID"][7:19],
                    f"{age(r['CreatedAt'])} ago" if r["CreatedAt"] else "",
                    human_size(r["Size"]),
                ]
                for r in rows
            ],
        )


@click.command()
@click.argument("source")
@click.argument("target")
@click.pass_obj
@clean_errors
def tag(config: EngineConfig, source: str, target: str) -> None:
    """Give image SOURCE another name, TARGET."""
    image_store(config).tag(source, target)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove even with several tags or in use.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rmi(config: EngineConfig, force: bool, names: tuple[str, ...]) -> None:
    """Remove images (untag; delete when no name is left)."""
    store = image_store(config)
    failed = False
    for name in names:
        try:
            for event in store.remove(name, force=force):
                click.echo(event)
        except (ImageError, InvalidValue) as exc:
            _fail(str(exc))
            failed = True
    if failed:
        sys.exit(1)


@click.command()
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids and commands.")
@click.option("-q", "--quiet", is_flag=True, help="Print only ids.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.argument("image")
@click.pass_obj
@clean_errors
def history(config: EngineConfig, no_trunc: bool, quiet: bool, fmt: str, image: str) -> None:
    """Show an image's layers and how they were made, newest first."""
    rows = image_store(config).history(image)
    if quiet:
        for row in rows:
            click.echo(row["id"] if no_trunc or row["id"] == "<missing>" else row["id"][7:19])
    elif fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
    else:

        def cut(text: str, width: int) -> str:
            return text if no_trunc or len(text) <= width else text[: width - 3] + "..."

        print_table(
            ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            [
                [
                    r["id"] if no_trunc or r["id"] == "<missing>" else r["id"][7:19],
                    f"{age(r['created'])} ago" if r["created"] else "",
                    cut(r["created_by"], 45),
                    human_size(r["size"]),
                    r["comment"],
                ]
                for r in rows
            ],
        )


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
@clean_errors
def inspect(config: EngineConfig, names: tuple[str, ...]) -> None:
    """Show images (and containers) as JSON."""
    found = []
    for name in names:
        info = next((i for i in (f(config, name) for f in FINDERS) if i is not None), None)
        if info is None:
            raise ImageNotFound(f"no such object: {name}")
        found.append(info)
    click.echo(json.dumps(found, indent=4))


COMMANDS = (pull, push, images, tag, rmi, history, inspect)


def register(group: click.Group) -> None:
    """Add the image commands to `group` (shoal's main group)."""
    for command in COMMANDS:
        group.add_command(command)
