"""The demo app's images (deploy/demo_images, built from Debian packages) run by Shoal's own
engine in a lab machine: the web container greets, shows its hostname and counts visits in
the redis container, and goes on answering once Redis is gone; and both images go through
the lab registry (skopeo's push, Shoal's pull) intact.

Every HTTP request is made from inside the lab machine, where the containers' bridge is; the
.debs come from the cache (downloaded with apt the first time).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from common import namespaces
from deploy import demo_images
from deploy.netns_driver import Machine
from runtime.config import EngineConfig
from runtime.container.engine import Engine
from runtime.container.spec import ContainerSpec
from runtime.engine_factory import LazyNetworks
from runtime.image.store import ImageStore
from runtime.image.unpack import extract
from runtime.network.bridge import BridgeNetwork
from tests.integration.conftest import LabHandle
from tests.integration.local_image import LocalImage
from tests.polling import until

T = TypeVar("T")
PAGE = "<h3>Hello World!</h3><b>Hostname:</b> web1<br/><b>Visits:</b> {visits}"
NO_REDIS = "<i>cannot connect to Redis, counter disabled</i>"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demo_images.build_layouts(tmp_path_factory.mktemp("demo-images"))


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def local_image(layout: Path, into: Path) -> LocalImage:
    """The layout's `latest`, its layers unpacked by the engine's own extractor (each
    checked against the config's DiffID), as an image the engine can run."""
    (entry,) = json.loads((layout / "index.json").read_bytes())["manifests"]
    manifest = json.loads(_blob(layout, entry["digest"]).read_bytes())
    config: dict[str, Any] = json.loads(_blob(layout, manifest["config"]["digest"]).read_bytes())
    dirs: list[Path] = []
    for index, (descriptor, diff_id) in enumerate(
        zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)
    ):
        layer_dir = into / str(index)
        layer_dir.mkdir(parents=True)
        with _blob(layout, descriptor["digest"]).open("rb") as blob:
            assert extract(blob, layer_dir).diff_id == diff_id
        dirs.append(layer_dir)
    return LocalImage(dirs[::-1], config)  # top layer first, as overlay's lowerdir


@dataclass
class MachineEngine:
    """An engine with its root, cgroups and bridge in a lab machine."""

    machine: Machine
    engine: Engine

    def call(self, work: Callable[[], T]) -> T:
        with namespaces.entered_netns(self.machine.name):
            return work()

    def run(self, spec: ContainerSpec, image: LocalImage) -> tuple[str, str]:
        """Start a container; (its id, its address on the machine's bridge)."""
        container_id = self.call(lambda: self.engine.run(spec, image))
        return container_id, str(self.engine.inspect(container_id)["NetworkSettings"]["ip"])

    def output(self, container_id: str) -> str:
        path = Path(self.engine.inspect(container_id)["LogPath"])
        lines = path.read_text().splitlines() if path.exists() else []
        return "".join(json.loads(line)["log"] for line in lines)

    def get(self, address: str) -> tuple[int, str]:
        """GET http://address/ from inside the machine: (status, body)."""

        def request() -> tuple[int, str]:
            conn = http.client.HTTPConnection(address, 80, timeout=10)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                return response.status, response.read().decode()
            finally:
                conn.close()

        return self.call(request)

    def redis_ping(self, address: str) -> bytes:
        def ping() -> bytes:
            with socket.create_connection((address, 6379), timeout=2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64)

        return self.call(ping)


@pytest.fixture
def machine_engine(make_lab: Callable[[int], LabHandle]) -> Iterator[MachineEngine]:
    """The engine on a fresh lab machine; its containers and bridge are removed after."""
    machine = make_lab(1).machines[0]
    config = EngineConfig(
        root=machine.state_dir / "shoal", cgroup_parent=f"{machine.cgroup_parent}/shoal"
    )
    host = MachineEngine(machine, Engine(config, LazyNetworks(config), cleanup_on_exit=False))
    yield host
    for info in host.engine.list(all=True):
        host.call(lambda info=info: host.engine.remove(info["Id"], force=True))  # type: ignore[misc]
    if machine.running:
        host.call(lambda: BridgeNetwork(config).teardown_all())


def test_the_web_container_counts_visits_in_redis_and_answers_without_it(
    layouts: dict[str, Path], machine_engine: MachineEngine, tmp_path: Path
) -> None:
    host = machine_engine
    web_image = local_image(layouts["demo/web"], tmp_path / "web")
    redis_image = local_image(layouts["demo/redis"], tmp_path / "redis")
    assert web_image.config["config"]["Cmd"] == ["python3", "/app/app.py"]

    redis, redis_ip = host.run(
        ContainerSpec(image="demo/redis", name="redis", hostname="redis"), redis_image
    )
    until(
        lambda: host.redis_ping(redis_ip),
        f"redis-server answering PING at {redis_ip}:6379",
        holds=lambda answer: answer == b"+PONG\r\n",
        timeout_s=30,
        retry_on=(OSError,),
        context=lambda: host.output(redis),
    )
    web, web_ip = host.run(
        ContainerSpec(
            image="demo/web", name="web", hostname="web1", env=(f"REDIS_HOST={redis_ip}",)
        ),
        web_image,
    )
    first = until(
        lambda: host.get(web_ip),
        f"the web container answering at {web_ip}:80",
        timeout_s=30,
        retry_on=(OSError, http.client.HTTPException),
        context=lambda: host.output(web),
    )
    assert first == (200, PAGE.format(visits=1)), host.output(web)
    assert host.get(web_ip) == (200, PAGE.format(visits=2))

    host.call(lambda: host.engine.remove(redis, force=True))  # its address is gone now
    assert host.get(web_ip) == (200, PAGE.format(visits=NO_REDIS)), host.output(web)
    assert host.engine.status(web) == "running"
    assert '"GET / HTTP/1.1" 200' in host.output(web)


def test_both_images_go_through_the_lab_registry(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(1)
    (machine,) = lab.machines
    address = lab.registry.rpartition(":")[0]
    demo_images.seed_demo_images(lab.name, address)
    store = ImageStore(EngineConfig(root=tmp_path / "shoal", insecure_registries=(lab.registry,)))
    with namespaces.entered_netns(machine.name):
        web = store.pull(f"{lab.registry}/demo/web:latest")
        redis = store.pull(f"{lab.registry}/demo/redis:latest")
    assert web.container_config["Cmd"] == ["python3", "/app/app.py"]
    assert web.container_config["ExposedPorts"] == {"80/tcp": {}}
    assert redis.container_config["Cmd"] == list(demo_images.REDIS_CMD)
    web_dirs, redis_dirs = web.lower_dirs(), redis.lower_dirs()
    assert (len(web_dirs), len(redis_dirs)) == (3, 2)
    assert web_dirs[-1] == redis_dirs[-1]  # one base layer, unpacked once
    assert (web_dirs[0] / "app" / "app.py").read_bytes() == demo_images.APP.read_bytes()
    assert (redis_dirs[0] / "usr" / "bin" / "redis-server").is_symlink()
    assert (web_dirs[-1] / "lib64").readlink() == Path("usr/lib64")
