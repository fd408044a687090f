"""Container specs: validation with clear messages, and Docker's rules for the process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runtime.container.cgroups import Limits
from runtime.container.spec import ContainerSpec, Mount, resolve_process
from runtime.errors import ContainerError

IMAGE = {"config": {"Env": ["PATH=/bin", "A=image"], "Cmd": ["sh"], "WorkingDir": "/srv"}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ContainerSpec("i", name="bad name"), "invalid container name"),
        (ContainerSpec("i", env=("NOEQUALS",)), "invalid environment variable"),
        (ContainerSpec("i", workdir="rel"), "must be absolute"),
        (ContainerSpec("i", network="overlay"), "network must be one of"),
        (ContainerSpec("i", network="host", ports=("80:80",)), "need the bridge network"),
        (ContainerSpec("i", limits=Limits(memory_bytes=1024)), "minimum memory limit"),
        (ContainerSpec("i", limits=Limits(pids=-1)), "cannot be negative"),
        (ContainerSpec("i", mounts=(Mount("nfs", "/x"),)), "mount type must be one of"),
        (ContainerSpec("i", mounts=(Mount("bind", "/x", "rel"),)), "absolute host path"),
        (ContainerSpec("i", mounts=(Mount("bind", "/../etc", "/tmp"),)), "without '..'"),
        (ContainerSpec("i", mounts=(Mount("volume", "/x", "a/b"),)), "invalid volume name"),
    ],
)
def test_invalid_specs(spec: ContainerSpec, message: str) -> None:
    with pytest.raises(ContainerError, match=message):
        spec.validate()


def test_json_round_trip() -> None:
    spec = ContainerSpec(
        "busybox",
        name="web",
        command=("httpd", "-f"),
        entrypoint=(),
        env=("A=1",),
        mounts=(Mount("tmpfs", "/t", tmpfs_size=10),),
        limits=Limits(1 << 30, 10**9, 5),
        ports=("80:80",),
    )
    assert ContainerSpec.from_json(spec.to_json()) == spec


def test_process_follows_docker_rules() -> None:
    plan = resolve_process(ContainerSpec("i", env=("A=spec", "B=2")), IMAGE, "host1")
    assert plan.argv == ("sh",)
    assert plan.cwd == "/srv"
    assert dict(e.split("=", 1) for e in plan.env) == {
        "PATH": "/bin",
        "A": "spec",
        "B": "2",
        "HOSTNAME": "host1",
    }
    with_cmd = resolve_process(ContainerSpec("i", command=("echo", "hi")), IMAGE, "h")
    assert with_cmd.argv == ("echo", "hi")
    entry = {"config": {"Entrypoint": ["/init"], "Cmd": ["--default"]}}
    assert resolve_process(ContainerSpec("i"), entry, "h").argv == ("/init", "--default")
    assert resolve_process(ContainerSpec("i", command=("x",)), entry, "h").argv == ("/init", "x")
    # --entrypoint replaces the image's entrypoint and drops its Cmd.
    overridden = resolve_process(ContainerSpec("i", entrypoint=("/bin/sh",)), entry, "h")
    assert overridden.argv == ("/bin/sh",)
    with pytest.raises(ContainerError, match="no command"):
        resolve_process(ContainerSpec("i"), {"config": {}}, "h")


def test_listing_containers_survives_one_removed_meanwhile(tmp_path: Path) -> None:
    """A container directory whose config goes between the listing and its stat (another
    thread removing it) is left out, not an error for every other container's lookup."""
    from runtime.container.store import ContainerStore

    store = ContainerStore(tmp_path)
    (tmp_path / ".lock").write_text("")  # the store's lock file, no container
    for name in ("keep", "going"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(f'{{"name": "{name}"}}')
    going = tmp_path / "going" / "config.json"
    real_exists, real_stat = Path.exists, Path.stat

    def seen_once(look: Any) -> Any:
        def looked(self: Path, **kwargs: Any) -> Any:
            result = look(self, **kwargs)
            if self == going and os.path.lexists(going):
                os.unlink(going)  # another thread removes it right after this look
            return result

        return looked

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "exists", seen_once(real_exists))
        patch.setattr(Path, "stat", seen_once(real_stat))
        assert "keep" in [d.id for d in store.all()]
    assert store.find("keep").id == "keep"


def test_a_late_state_write_never_brings_a_removed_container_back(tmp_path: Path) -> None:
    from runtime.container.store import ContainerDir, State

    d = ContainerDir(tmp_path / "gone")
    with pytest.raises(FileNotFoundError):
        d.save_state(State())
    assert not (tmp_path / "gone").exists()
