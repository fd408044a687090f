"""The demo app's images: which packages apt's answers lead to, the cache of .debs, the
merged-/usr layers, reproducible layouts, and the app itself (when Flask is importable)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from deploy import busybox_image, demo_images, registry
from deploy.demo_images import Alternative, DemoImageError, Layer

# `apt-cache depends --recurse --no-recommends ...` as apt prints it (trimmed), plus a
# Recommends line that the flags would have left out.
DEPENDS = """\
python3-flask
  Depends: python3-click
 |Depends: python3-importlib-metadata
  Depends: python3
  Depends: <python3:any>
    python3
  Recommends: python3-dotenv
python3
  PreDepends: python3-minimal
  Depends: python3.11
python3-click
 |Depends: python3-importlib-metadata
  Depends: python3
python3-importlib-metadata
  Depends: python3-zipp
python3-zipp
python3-minimal
  Depends: dpkg
python3.11
 |Depends: media-types
  Depends: mime-support
  Depends: libc6
media-types
mime-support
  Depends: media-types
dpkg
  Depends: tar
tar
libc6
  Depends: libgcc-s1
libgcc-s1
  Depends: libc6
redis-server
  PreDepends: init-system-helpers
  Depends: lsb-base
    sysvinit-utils
  Depends: <perl:any>
    perl
  Depends: libc6
init-system-helpers
 |Depends: usrmerge
  Depends: usr-is-merged
    usrmerge
usrmerge
  Depends: <perl:any>
    perl
usr-is-merged
perl
lsb-base
  Depends: sysvinit-utils
sysvinit-utils
<python3:any>
<perl:any>
"""


def test_apt_depends_output_is_read_as_groups_of_alternatives() -> None:
    graph = demo_images.parse_depends(DEPENDS)
    assert "<python3:any>" not in graph and "python3" in graph
    assert graph["python3-flask"] == [
        (Alternative("python3-click"),),
        (Alternative("python3-importlib-metadata"), Alternative("python3")),
        (Alternative("python3", virtual=True, providers=("python3",)),),
    ]  # the Recommends is not a dependency
    assert graph["redis-server"][1] == (Alternative("lsb-base", providers=("sysvinit-utils",)),)
    assert graph["init-system-helpers"] == [
        (Alternative("usrmerge"), Alternative("usr-is-merged", providers=("usrmerge",)))
    ]
    assert graph["python3-zipp"] == []


def test_closure_takes_what_is_chosen_already_then_the_first_real_alternative() -> None:
    graph = demo_images.parse_depends(DEPENDS)
    assert demo_images.closure(["python3-flask"], graph) == [
        "libc6",
        "libgcc-s1",
        "media-types",  # the first of media-types | mime-support
        "python3",  # a virtual python3:any, provided by python3
        "python3-click",
        "python3-flask",
        "python3-minimal",
        "python3.11",
    ]  # python3 satisfies `python3-importlib-metadata | python3`; dpkg (and tar) skipped


def test_closure_leaves_out_what_only_maintainer_scripts_need() -> None:
    graph = demo_images.parse_depends(DEPENDS)
    # init-system-helpers (and usrmerge's perl through it), lsb-base: skipped; the perl
    # redis-server depends on itself, through a virtual package, is kept.
    assert demo_images.closure(["redis-server"], graph) == [
        "libc6",
        "libgcc-s1",
        "perl",
        "redis-server",
    ]


def test_a_real_alternative_comes_before_a_virtual_one_and_provided_ones_count() -> None:
    graph: dict[str, list[demo_images.Group]] = {
        "app": [
            (Alternative("c"),),
            (Alternative("shim", providers=("c",)),),  # c provides shim: no shim needed
            (Alternative("api", virtual=True, providers=("impl",)), Alternative("c")),
        ],
        "other": [(Alternative("api", virtual=True, providers=("impl",)), Alternative("d"))],
        "only-virtual": [(Alternative("api", virtual=True, providers=("impl",)),)],
        "c": [],
        "d": [],
        "impl": [],
        "shim": [],
    }
    assert demo_images.closure(["app"], graph) == ["app", "c"]
    assert demo_images.closure(["other"], graph) == ["d", "other"]
    assert demo_images.closure(["only-virtual"], graph) == ["impl", "only-virtual"]


def test_closure_errors_name_the_package() -> None:
    with pytest.raises(DemoImageError, match="apt knows no package nosuch"):
        demo_images.closure(["nosuch"], {})
    graph: dict[str, list[demo_images.Group]] = {"app": [(Alternative("v", virtual=True),)]}
    with pytest.raises(DemoImageError, match="no package satisfies the dependency v"):
        demo_images.closure(["app"], graph)


SHOW = """\
Package: redis-server
Version: 5:7.0.15-1~deb12u10
Architecture: amd64
Description: Persistent key-value database with network interface
 Redis is a key-value database in a similar vein to memcache but the dataset
 is non-volatile.
Filename: pool/updates/main/r/redis/redis-server_7.0.15-1~deb12u10_amd64.deb
SHA256: 784e17b51024ff878fd7d709a68346658fa9b21f6de740cb75e474f28790971c

Package: liblzf1
Version: 3.6-3
Architecture: amd64
SHA256: 9854b0866201b63e04f1e446f45f01ef4a6f72c61f2250b75f944f6046cc7e8c
"""


def test_apt_records_give_the_file_names_apt_get_download_writes() -> None:
    records = demo_images.parse_records(SHOW)
    assert set(records) == {"redis-server", "liblzf1"}
    assert records["redis-server"].filename == "redis-server_5%3a7.0.15-1~deb12u10_amd64.deb"
    assert records["liblzf1"].filename == "liblzf1_3.6-3_amd64.deb"
    assert records["liblzf1"].sha256.startswith("9854b086")
    with pytest.raises(DemoImageError, match="no 'SHA256' for x"):
        demo_images.parse_records("Package: x\nVersion: 1\nArchitecture: all\n")


class FakeApt:
    """apt-cache show and apt-get download over a made-up archive of package -> content."""

    def __init__(self, archive: dict[str, bytes]) -> None:
        self.archive = archive
        self.downloads: list[list[str]] = []
        self.corrupt = False

    def record(self, name: str) -> str:
        digest = hashlib.sha256(self.archive[name]).hexdigest()
        return f"Package: {name}\nVersion: 1:1.0\nArchitecture: amd64\nSHA256: {digest}\n"

    def __call__(self, argv: Sequence[str], cwd: Path | None = None) -> str:
        if list(argv[:2]) == ["apt-cache", "show"]:
            return "\n".join(self.record(name) for name in argv[3:] if name in self.archive)
        assert list(argv[:2]) == ["apt-get", "download"] and cwd is not None
        wanted = [arg for arg in argv if "=" in arg and "::" not in arg]
        self.downloads.append(wanted)
        for arg in wanted:
            name = arg.split("=")[0]
            content = b"corrupt" if self.corrupt else self.archive[name]
            (cwd / f"{name}_1%3a1.0_amd64.deb").write_bytes(content)
        return ""


def test_fetch_downloads_only_what_the_cache_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apt = FakeApt({"a": b"deb a", "b": b"deb b", "c": b"deb c"})
    monkeypatch.setattr(demo_images, "_apt", apt)
    cache = tmp_path / "debs"
    cache.mkdir()
    (cache / "a_1%3a1.0_amd64.deb").write_bytes(b"deb a")  # cached, valid
    (cache / "b_1%3a1.0_amd64.deb").write_bytes(b"truncat")  # cached, but not what apt says

    paths = demo_images.fetch(["a", "b", "c"], cache)
    assert apt.downloads == [["b=1:1.0", "c=1:1.0"]]
    assert [p.read_bytes() for p in paths] == [b"deb a", b"deb b", b"deb c"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in paths)

    assert demo_images.fetch(["c", "a"], cache) == [paths[2], paths[0]]
    assert len(apt.downloads) == 1  # the second time: nothing to download


def test_fetch_refuses_a_download_that_is_not_what_apt_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apt = FakeApt({"a": b"deb a"})
    apt.corrupt = True
    monkeypatch.setattr(demo_images, "_apt", apt)
    with pytest.raises(DemoImageError, match=r"no valid a_1%3a1\.0_amd64\.deb"):
        demo_images.fetch(["a"], tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing kept, not even the download directory
    with pytest.raises(DemoImageError, match="no candidate version of nosuch"):
        demo_images.fetch(["a", "nosuch"], tmp_path)


@pytest.mark.parametrize(
    ("path", "merged"),
    [
        ("lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6"),
        ("lib64/ld-linux-x86-64.so.2", "usr/lib64/ld-linux-x86-64.so.2"),
        ("bin/sh", "usr/bin/sh"),
        ("sbin", "usr/sbin"),
        ("usr/lib/python3.11/os.py", "usr/lib/python3.11/os.py"),
        ("library/x", "library/x"),
        ("etc/redis/redis.conf", "etc/redis/redis.conf"),
    ],
)
def test_usr_merged_paths(path: str, merged: str) -> None:
    assert demo_images.usr_merged(path) == merged


@pytest.mark.parametrize(
    ("old", "target", "expected"),
    [
        # the loader's link: absolute, into /lib
        (
            "lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        ),
        ("lib/x86_64-linux-gnu/libz.so.1", "libz.so.1.2.13", "libz.so.1.2.13"),  # moved along
        # from /usr into /lib: now beside it
        (
            "usr/lib/x86_64-linux-gnu/libz.so",
            "../../../lib/x86_64-linux-gnu/libz.so.1",
            "libz.so.1",
        ),
        # from /lib into /usr: the old relative path would lead to usr/usr/...
        ("lib/systemd/system/x.service", "../../../usr/lib/x/x.service", "../../x/x.service"),
        ("usr/bin/python3", "python3.11", "python3.11"),  # nothing moves: as written
        ("usr/bin/x", "./y", "./y"),
        ("usr/bin/x", "/usr/bin/y", "/usr/bin/y"),
        ("etc/alternatives/x", "../../../../outside", "../../../../outside"),
    ],
)
def test_symlinks_follow_what_they_point_to(old: str, target: str, expected: str) -> None:
    assert demo_images.relinked(old, demo_images.usr_merged(old), target) == expected


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **extra: Any
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, len(data), extra.pop("mode", 0o644)
    info.mtime, info.uid, info.gid, info.uname = 1712345678, 1000, 42, "someone"
    for key, value in extra.items():
        setattr(info, key, value)
    return info, data


def _read(raw: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getmembers()


def _content(raw: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_a_package_layer_is_usr_merged_sorted_owned_by_root_and_without_docs() -> None:
    layer = Layer()
    layer.add_deb(
        [
            _member("./", tarfile.DIRTYPE, mode=0o755),
            _member("./lib/", tarfile.DIRTYPE, mode=0o755),
            _member("./lib/x86_64-linux-gnu/", tarfile.DIRTYPE, mode=0o755),
            _member("./lib/x86_64-linux-gnu/libz.so.1.2.13", data=b"ELF", mode=0o644),
            _member("./lib/x86_64-linux-gnu/libz.so.1", tarfile.SYMTYPE, linkname="libz.so.1.2.13"),
            _member("./lib64/ld.so", tarfile.SYMTYPE, linkname="/lib/x86_64-linux-gnu/ld.so"),
            _member("./bin/a", data=b"#!a", mode=0o4755),
            _member("./bin/b", tarfile.LNKTYPE, linkname="./bin/a", mode=0o755),
            _member("./etc/z.conf", data=b"secret", mode=0o640),
            _member("./usr/share/doc/z/copyright", data=b"text"),
            _member("./usr/share/man/man1/a.1.gz", data=b"man"),
            _member("./usr/share/locale/de/LC_MESSAGES/z.mo", data=b"mo"),
            _member("./usr/share/zoneinfo/UTC", data=b"TZif"),
            _member("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
            _member("./usr/lib/.wh.x", data=b""),
        ]
    )
    raw = layer.tar()
    members = _read(raw)
    names = [m.name for m in members]
    assert names == [
        "etc",
        "etc/z.conf",
        "usr",
        "usr/bin",
        "usr/bin/a",
        "usr/bin/b",
        "usr/lib",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu/libz.so.1",
        "usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        "usr/lib64",
        "usr/lib64/ld.so",
        "usr/share",
        "usr/share/zoneinfo",
        "usr/share/zoneinfo/UTC",
    ]
    by_name = {m.name: m for m in members}
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "root" for m in members)
    assert {m.mtime for m in members} == {busybox_image.EPOCH}
    assert by_name["usr/bin/a"].mode == 0o4755 and by_name["etc/z.conf"].mode == 0o640
    assert by_name["usr/bin/b"].isfile() and _content(raw, "usr/bin/b") == b"#!a"
    assert by_name["usr/lib/x86_64-linux-gnu/libz.so.1"].linkname == "libz.so.1.2.13"
    assert by_name["usr/lib64/ld.so"].linkname == "/usr/lib/x86_64-linux-gnu/ld.so"
    assert by_name["usr/lib64"].isdir()  # made, as the package had ./lib64 only implied


def test_a_hardlink_to_a_file_not_shipped_before_it_is_refused() -> None:
    with pytest.raises(DemoImageError, match="hardlink usr/bin/b to usr/bin/a"):
        Layer().add_deb([_member("./usr/bin/b", tarfile.LNKTYPE, linkname="./usr/bin/a")])


def test_the_base_layer_skeleton() -> None:
    layer = Layer()
    layer.add_deb([_member("./tmp/", tarfile.DIRTYPE, mode=0o755)])
    demo_images.skeleton(layer)
    raw = layer.tar()
    by_name = {m.name: m for m in _read(raw)}
    for name in ("bin", "lib", "lib64", "sbin"):
        assert by_name[name].issym() and by_name[name].linkname == f"usr/{name}"
        assert by_name[f"usr/{name}"].isdir()
    assert by_name["tmp"].mode == 0o1777  # the skeleton's mode wins over a package's
    assert by_name["proc"].isdir() and by_name["sys"].isdir() and by_name["dev"].isdir()
    passwd = _content(raw, "etc/passwd").decode()
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["root", "nobody"]
    assert "hosts: files dns" in _content(raw, "etc/nsswitch.conf").decode()
    assert "etc/hosts" not in by_name and "etc/resolv.conf" not in by_name  # the runtime's


def _deb(where: Path, name: str, files: dict[str, bytes], mtime: int = 1_000_000_000) -> Path:
    """A real .deb of `files` (path -> content; content b"->x" makes a symlink to x)."""
    root = where / f"{name}-{mtime}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1:1.0\nArchitecture: all\n"
        "Maintainer: Shoal <shoal@example.invalid>\nDescription: a test package\n"
    )
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith(b"->"):
            target.symlink_to(content[2:].decode())
        else:
            target.write_bytes(content)
        os.utime(target, (mtime, mtime), follow_symlinks=False)
    out = where / f"{name}_1%3a1.0_all-{mtime}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_a_package_layer_from_real_debs_is_the_same_bytes_whenever_built(tmp_path: Path) -> None:
    files = {
        "lib/x86_64-linux-gnu/libq.so.1": b"ELF",
        "usr/lib/x86_64-linux-gnu/libq.so": b"->../../../lib/x86_64-linux-gnu/libq.so.1",
        "usr/share/doc/q/copyright": b"text",
    }
    early = _deb(tmp_path, "q", files, mtime=1_000_000_000)
    late = _deb(tmp_path, "q", files, mtime=1_600_000_000)
    raw = demo_images.packages_layer([early])
    assert demo_images.packages_layer([late]) == raw
    by_name = {m.name: m for m in _read(raw)}
    assert _content(raw, "usr/lib/x86_64-linux-gnu/libq.so.1") == b"ELF"
    assert by_name["usr/lib/x86_64-linux-gnu/libq.so"].linkname == "libq.so.1"
    assert not any(name.startswith("usr/share/doc") for name in by_name)


def test_a_broken_deb_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken_1_all.deb"
    broken.write_bytes(b"!<arch>\nnot really")
    with pytest.raises(DemoImageError, match=r"dpkg-deb could not read broken_1_all\.deb"):
        demo_images.packages_layer([broken])


@pytest.fixture
def debs(tmp_path: Path) -> tuple[list[Path], list[Path], Path]:
    """(web's .debs, redis's .debs, app.py): one package in both, one of each's own."""
    common = _deb(tmp_path, "libc", {"lib/x86_64-linux-gnu/libc.so.6": b"libc"})
    web = _deb(tmp_path, "py", {"usr/bin/python3": b"python"})
    redis = _deb(tmp_path, "redis", {"usr/bin/redis-server": b"redis"})
    app = tmp_path / "app.py"
    app.write_text("print('hello')\n")
    return [common, web], [common, redis], app


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
    return data


def _image(layout: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, config) of the layout's `latest`."""
    (entry,) = json.loads((layout / "index.json").read_bytes())["manifests"]
    assert entry["annotations"] == {busybox_image.REF_ANNOTATION: "latest"}
    manifest = json.loads(_blob(layout, entry["digest"]))
    return manifest, json.loads(_blob(layout, manifest["config"]["digest"]))


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layouts_are_reproducible_and_share_the_base_layer(
    tmp_path: Path, debs: tuple[list[Path], list[Path], Path]
) -> None:
    web_debs, redis_debs, app = debs
    one = demo_images._write(tmp_path / "one", demo_images.image_specs(web_debs, redis_debs, app))
    demo_images._write(tmp_path / "two", demo_images.image_specs(web_debs, redis_debs, app))
    assert set(one) == {"demo/web", "demo/redis"}
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert json.loads((one["demo/web"] / "oci-layout").read_bytes()) == {
        "imageLayoutVersion": "1.0.0"
    }

    web_manifest, web = _image(one["demo/web"])
    redis_manifest, redis = _image(one["demo/redis"])
    assert web_manifest["layers"][0] == redis_manifest["layers"][0]  # the shared base
    assert len(web_manifest["layers"]) == 3 and len(redis_manifest["layers"]) == 2
    assert web["config"] == {
        "Env": [demo_images.PATH_ENV, "NAME=World"],
        "Cmd": ["python3", "/app/app.py"],
        "WorkingDir": "/app",
        "ExposedPorts": {"80/tcp": {}},
    }
    assert redis["config"]["Cmd"][:1] == ["redis-server"]
    assert redis["config"]["ExposedPorts"] == {"6379/tcp": {}}
    assert web["architecture"] == busybox_image.host_arch() and web["os"] == "linux"

    layers: dict[str, list[str]] = {}
    for layout, manifest, config in (
        (one["demo/web"], web_manifest, web),
        (one["demo/redis"], redis_manifest, redis),
    ):
        blobs = [_blob(layout, d["digest"]) for d in manifest["layers"]]
        assert all(blob[4:8] == b"\0\0\0\0" for blob in blobs)  # gzip mtime 0
        raws = [gzip.decompress(blob) for blob in blobs]
        assert config["rootfs"]["diff_ids"] == [
            "sha256:" + hashlib.sha256(raw).hexdigest() for raw in raws
        ]
        assert len(config["history"]) == len(raws)
        layers[layout.name] = [" ".join(m.name for m in _read(raw)) for raw in raws]
    base = layers["web"][0].split()
    assert "usr/lib/x86_64-linux-gnu/libc.so.6" in base and "etc/passwd" in base
    assert "usr/bin/python3" in layers["web"][1] and "libc" not in layers["web"][1]
    assert layers["web"][2] == "app app/app.py"
    assert "usr/bin/redis-server" in layers["redis"][1]


def test_cached_layouts_are_built_once_for_the_same_inputs(
    tmp_path: Path, debs: tuple[list[Path], list[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    web_debs, redis_debs, app = debs
    monkeypatch.setattr(demo_images, "_debs", lambda cache: (web_debs, redis_debs))
    builds: list[int] = []
    real_specs = demo_images.image_specs

    def counting_specs(*args: Any) -> list[demo_images.ImageSpec]:
        builds.append(1)
        return real_specs(*args)

    monkeypatch.setattr(demo_images, "image_specs", counting_specs)
    cache = tmp_path / "layouts"
    first = demo_images.cached_layouts(cache, tmp_path / "debs", app)
    assert demo_images.cached_layouts(cache, tmp_path / "debs", app) == first
    assert len(builds) == 1
    _image(first["demo/web"])  # a whole layout

    app.write_text("print('changed')\n")
    second = demo_images.cached_layouts(cache, tmp_path / "debs", app)
    assert second != first and len(builds) == 2
    assert [p.name for p in cache.iterdir()] == [second["demo/web"].parent.name]  # old gone


def test_seeding_pushes_both_images_from_the_registry_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layouts = {"demo/web": tmp_path / "web", "demo/redis": tmp_path / "redis"}
    monkeypatch.setattr(demo_images, "cached_layouts", lambda: layouts)
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(
        registry, "run_in", lambda netns, argv, timeout: calls.append((netns, list(argv)))
    )
    demo_images.seed_demo_images("lab1", "10.77.0.2")
    assert [netns for netns, _ in calls] == ["lab1-registry", "lab1-registry"]
    assert [argv[-2:] for _, argv in calls] == [
        [f"oci:{tmp_path / 'redis'}:latest", "docker://10.77.0.2:5000/demo/redis:latest"],
        [f"oci:{tmp_path / 'web'}:latest", "docker://10.77.0.2:5000/demo/web:latest"],
    ]
    assert calls[0][1][0] == registry.SKOPEO_BIN and "--dest-tls-verify=false" in calls[0][1]


def test_main_builds_into_the_output_or_says_why_not(
    tmp_path: Path,
    debs: tuple[list[Path], list[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    web_debs, redis_debs, _ = debs
    monkeypatch.setattr(demo_images, "_debs", lambda cache: (web_debs, redis_debs))
    assert demo_images.main(["--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"demo/web: {tmp_path / 'out' / 'web'} (" in out
    assert demo_images.image_size(tmp_path / "out" / "redis") > 0

    def fail(cache: Path) -> None:
        raise DemoImageError("apt-get download failed: 404 Not Found")

    monkeypatch.setattr(demo_images, "_debs", fail)
    assert demo_images.main(["--output", str(tmp_path / "out2")]) == 1
    assert capsys.readouterr().err == "demo_images: error: apt-get download failed: 404 Not Found\n"


# -- the app (needs Flask and the Redis client, as in the image; skipped without them) ---------


class FakeRedis:
    def __init__(self, error: Exception | None = None) -> None:
        self.values: dict[str, int] = {}
        self.error = error

    def incr(self, key: str) -> int:
        if self.error is not None:
            raise self.error
        self.values[key] = self.values.get(key, 0) + 1
        return self.values[key]


def _load_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    pytest.importorskip("flask")
    pytest.importorskip("redis")
    monkeypatch.delenv("REDIS_HOST", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("demo_app", demo_images.APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, FakeRedis]]:
    module = _load_app(monkeypatch)
    fake = FakeRedis()
    monkeypatch.setattr(module, "redis", fake)
    monkeypatch.delenv("NAME", raising=False)
    yield module, fake


def test_the_app_greets_shows_its_hostname_and_counts(
    app: tuple[ModuleType, FakeRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, fake = app
    client = module.app.test_client()
    first = client.get("/")
    assert first.status_code == 200
    assert first.get_data(as_text=True) == (
        f"<h3>Hello World!</h3><b>Hostname:</b> {socket.gethostname()}<br/><b>Visits:</b> 1"
    )
    assert client.get("/").get_data(as_text=True).endswith("<b>Visits:</b> 2")
    assert fake.values == {"counter": 2}
    monkeypatch.setenv("NAME", "Shoal <3")
    assert "<h3>Hello Shoal &lt;3!</h3>" in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("error", ["ConnectionError", "TimeoutError"])
def test_the_app_answers_without_redis(
    app: tuple[ModuleType, FakeRedis], monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    exceptions = pytest.importorskip("redis.exceptions")
    module, _ = app
    failing = FakeRedis(getattr(exceptions, error)("Error 111 connecting to redis:6379"))
    monkeypatch.setattr(module, "redis", failing)
    response = module.app.test_client().get("/")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert text.startswith("<h3>Hello World!</h3>")
    assert text.endswith("<b>Visits:</b> <i>cannot connect to Redis, counter disabled</i>")


def test_the_app_asks_redis_at_redis_with_short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load_app(monkeypatch).redis.connection_pool.connection_kwargs
    assert (settings["host"], settings["port"]) == ("redis", 6379)
    assert settings["socket_connect_timeout"] == settings["socket_timeout"] == 1
    elsewhere = _load_app(monkeypatch, REDIS_HOST="172.18.0.5").redis
    assert elsewhere.connection_pool.connection_kwargs["host"] == "172.18.0.5"
