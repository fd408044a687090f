"""The image commands through click, against the fake registry: output formats, and errors
as one line with exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from runtime.commands.images import register
from runtime.config import EngineConfig
from tests.unit.runtime.image import images
from tests.unit.runtime.image.fake_registry import FakeRegistry

LAYER = images.layer_tar({"bin/app": b"#!/bin/sh\necho hi\n"})


def shoal(root: Path, registry: FakeRegistry, *args: str) -> Result:
    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = EngineConfig(root=root, insecure_registries=(registry.address,))

    register(group)
    return CliRunner().invoke(group, list(args))


@pytest.fixture
def published(registry: FakeRegistry) -> images.BuiltImage:
    built = images.build([LAYER])
    images.publish(registry, "team/app", "v1", built)
    return built


def test_pull_images_tag_history_inspect_rmi(
    registry: FakeRegistry, tmp_path: Path, published: images.BuiltImage
) -> None:
    ref = f"{registry.address}/team/app:v1"
    result = shoal(tmp_path, registry, "pull", "-q", ref)
    assert result.exit_code == 0, result.output
    assert result.output == f"{ref}\n"

    assert shoal(tmp_path, registry, "tag", ref, "app:latest").exit_code == 0

    table = shoal(tmp_path, registry, "images").output.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = sorted(line.split()[:3] for line in table[1:])
    assert rows == [
        [f"{registry.address}/team/app", "v1", published.id[7:19]],
        ["app", "latest", published.id[7:19]],
    ]
    assert shoal(tmp_path, registry, "images", "-q").output == f"{published.id[7:19]}\n"
    as_json = [
        json.loads(line)
        for line in shoal(
            tmp_path, registry, "images", "--format", "json", "app"
        ).output.splitlines()
    ]
    assert as_json == [
        {
            "Repository": "app",
            "Tag": "latest",
            "ID": published.id,
            "CreatedAt": "2024-01-01T00:00:00Z",
            "Size": len(b"#!/bin/sh\necho hi\n"),
        }
    ]

    history = shoal(tmp_path, registry, "history", "app").output.splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"]
    assert history[1].startswith(published.id[7:19]) and "layer 0" in history[1]

    inspected = json.loads(shoal(tmp_path, registry, "inspect", "app").output)
    assert inspected[0]["Id"] == published.id
    assert sorted(inspected[0]["RepoTags"]) == sorted(["app:latest", ref])

    removed = shoal(tmp_path, registry, "rmi", "app", ref)
    assert removed.exit_code == 0, removed.output
    assert removed.output.splitlines()[-1] == f"Deleted: {published.id}"
    assert shoal(tmp_path, registry, "images", "-q").output == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pull", "Bad"], "repository name must be lowercase"),
        (["pull", "{registry}/nothing:v1"], "not found in registry"),
        (["inspect", "nothing"], "no such object: nothing"),
        (["history", "nothing"], "no such image: nothing"),
        (["tag", "nothing", "x"], "no such image: nothing"),
        (["rmi", "nothing"], "no such image: nothing"),
        (["push", "{registry}/nothing:v1"], "no such image"),
    ],
)
def test_errors_are_one_line(
    registry: FakeRegistry, tmp_path: Path, args: list[str], message: str
) -> None:
    result = shoal(tmp_path, registry, *[a.format(registry=registry.address) for a in args])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith("shoal: error: ")
    assert message in result.output
