"""The demo app's images, `demo/web` (Flask, the Redis client and deploy/demo_app/app.py) and
`demo/redis`, built from Debian packages as OCI image layouts and pushed to a lab registry.

There is no Dockerfile builder yet, so the layers are assembled here, as deploy/busybox_image
does for busybox: apt resolves each image's Depends/PreDepends closure (no Recommends), `apt-get
download` fetches the .debs into a cache (a second build downloads nothing), and the files of
each .deb (`dpkg-deb --fsys-tarfile`; nothing is installed on the host and no maintainer script
runs) go into the layer under fixed times and root ownership, sorted, so the same .debs always
give the same bytes. Debian 12's packages still ship files under /bin, /lib, /lib64 and /sbin:
those move under /usr and the root gets the merged-/usr symlinks, so the loader and the
libraries are where binaries look for them whichever path they use.

Layers: a base shared by both images (the root's skeleton and the packages both closures
hold: libc6 and friends), one of each image's other packages, and the app for web.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deploy import registry
from deploy.busybox_image import (
    CREATED,
    GROUP,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    PASSWD,
    REF_ANNOTATION,
    canonical_json,
    host_arch,
    put_blob,
    tar_entry,
)
from deploy.errors import MachineError

DEB_CACHE = Path("/var/cache/shoal/demo-debs")
LAYOUT_CACHE = Path("/var/cache/shoal/demo-images")
APP = Path(__file__).parent / "demo_app" / "app.py"

WEB_PACKAGES = ("python3", "python3-flask", "python3-redis")
REDIS_PACKAGES = ("redis-server",)
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# redis-server 7 without a config file: foreground, every interface, no persistence.
REDIS_CMD = (
    "redis-server",
    "--protected-mode",
    "no",
    "--bind",
    "0.0.0.0",
    "--save",
    "",
    "--appendonly",
    "no",
)

# Packages only package management, maintainer scripts or an init system use; none of these
# runs in the images, so a dependency on one of them (or an alternative naming one) is left
# out, and with it what it would pull in (perl, passwd, PAM, dpkg itself).
SKIPPED = frozenset(
    {
        "adduser",
        "debconf",
        "dpkg",
        "init-system-helpers",
        "install-info",
        "lsb-base",
        "sysvinit-utils",
        "usr-is-merged",
        "usrmerge",
    }
)
DEPENDENCY_KINDS = ("Depends", "PreDepends")
APT_DEPENDS = (
    "apt-cache",
    "depends",
    "--recurse",
    "--no-recommends",
    "--no-suggests",
    "--no-conflicts",
    "--no-breaks",
    "--no-replaces",
    "--no-enhances",
)
EXCLUDED = ("usr/share/doc", "usr/share/info", "usr/share/locale", "usr/share/man")
MERGED = ("bin", "lib", "lib64", "sbin")  # each becomes a symlink to usr/<it>
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
APT_TIMEOUT_S = 600


class DemoImageError(MachineError):
    """The demo images cannot be built (apt cannot resolve or fetch a package, ...)."""


# -- which packages -----------------------------------------------------------------------


@dataclass(frozen=True)
class Alternative:
    """One alternative of a dependency: a package, or a virtual one and who provides it."""

    name: str
    virtual: bool = False
    providers: tuple[str, ...] = ()


Group = tuple[Alternative, ...]  # alternatives of one dependency ("a | b")


def _bare(name: str) -> str:
    """A package name without its architecture qualifier (python3:any -> python3)."""
    return name.partition(":")[0]


def parse_depends(text: str) -> dict[str, list[Group]]:
    """Package -> its Depends/PreDepends groups, from `apt-cache depends --recurse` output.

    A line `  Depends: x` is a dependency, ` |Depends: x` one that has the next as an
    alternative, `<x>` a virtual package, and deeper-indented lines under one the packages
    providing it (a real package's too)."""
    graph: dict[str, list[list[Alternative]]] = {}
    groups: list[list[Alternative]] | None = None  # of the package being read
    last: Alternative | None = None  # the dependency that provider lines belong to
    open_group = False  # the previous dependency line ended in "or"
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not line.startswith(" "):  # a package; a virtual one lists nothing of use
            virtual = stripped.startswith("<")
            groups = None if virtual else graph.setdefault(_bare(stripped), [])
            last, open_group = None, False
        elif groups is None:
            continue
        elif line.startswith("    "):  # a provider of the dependency above
            if last is not None:
                last = replace(last, providers=(*last.providers, _bare(stripped)))
                groups[-1][-1] = last
        else:
            kind, _, target = stripped.lstrip("|").partition(":")
            if kind.strip() not in DEPENDENCY_KINDS:
                last, open_group = None, False
                continue
            target = target.strip()
            last = Alternative(_bare(target.strip("<>")), target.startswith("<"))
            if open_group:
                groups[-1].append(last)
            else:
                groups.append([last])
            open_group = stripped.startswith("|")
    return {name: [tuple(group) for group in groups] for name, groups in graph.items()}


def _satisfied(group: Group, chosen: set[str]) -> bool:
    return any(alt.name in chosen or chosen.intersection(alt.providers) for alt in group)


def _pick(group: Group, known: Mapping[str, object]) -> str:
    """The package that satisfies `group`: the first alternative that is a real package
    apt knows, else the first provider of a virtual one."""
    for alt in group:
        if not alt.virtual and alt.name in known:
            return alt.name
    for alt in group:
        for provider in alt.providers:
            if provider not in SKIPPED and provider in known:
                return provider
    names = " | ".join(alt.name for alt in group)
    raise DemoImageError(f"no package satisfies the dependency {names}")


def closure(roots: Sequence[str], graph: Mapping[str, list[Group]]) -> list[str]:
    """The packages `roots` need, sorted: their Depends/PreDepends, transitively.

    A dependency some of whose alternatives are already chosen needs nothing more (as apt
    decides when python3 satisfies `python3-importlib-metadata | python3 (>> 3.8)`); groups
    with alternatives are decided after every plain dependency, so that they see as much
    as possible; a dependency naming a SKIPPED package is left out."""
    chosen: set[str] = set()  # wanted: read or still to read
    queue: list[str] = []  # chosen, dependencies not read yet
    undecided: list[Group] = []

    def want(name: str) -> None:
        if name not in graph:
            raise DemoImageError(f"apt knows no package {name} (run apt-get update?)")
        if name not in chosen:
            chosen.add(name)
            queue.append(name)

    for root in roots:
        want(root)
    while queue or undecided:
        if not queue:
            group = undecided.pop(0)
            if not _satisfied(group, chosen):
                want(_pick(group, graph))
            continue
        for group in graph[queue.pop(0)]:
            if any(alt.name in SKIPPED for alt in group):
                continue
            if len(group) > 1:
                undecided.append(group)
            elif not _satisfied(group, chosen):
                want(_pick(group, graph))
    return sorted(chosen)


def _apt(argv: Sequence[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(
            list(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
        )
    except FileNotFoundError:
        raise DemoImageError(f"{argv[0]} is missing: these images need apt (Debian)") from None
    if result.returncode != 0:
        raise DemoImageError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def resolve(*root_sets: Sequence[str]) -> list[list[str]]:
    """The Debian packages an image of each set of roots holds (see `closure`), asked of apt
    once (each apt-cache run reads the package lists anew: about a second)."""
    every = sorted({name for roots in root_sets for name in roots})
    graph = parse_depends(_apt([*APT_DEPENDS, *every]))
    return [closure(roots, graph) for roots in root_sets]


# -- the .deb files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Deb:
    """The candidate version of a package, as apt's lists describe it."""

    package: str
    version: str
    architecture: str
    sha256: str

    @property
    def filename(self) -> str:
        """The name `apt-get download` gives the file."""
        return f"{self.package}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def parse_records(text: str) -> dict[str, Deb]:
    """Package -> Deb, from `apt-cache show --no-all-versions` output (RFC 822 paragraphs)."""
    found: dict[str, Deb] = {}
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and not line[0].isspace():
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" not in fields:
            continue
        try:
            deb = Deb(
                fields["Package"], fields["Version"], fields["Architecture"], fields["SHA256"]
            )
        except KeyError as missing:
            raise DemoImageError(f"apt has no {missing} for {fields['Package']}") from None
        found.setdefault(deb.package, deb)
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(packages: Sequence[str], cache: Path = DEB_CACHE) -> list[Path]:
    """The .deb of each package's candidate version, from `cache` when it has it with the
    checksum apt's lists give, else downloaded into it with `apt-get download`."""
    records = parse_records(_apt(["apt-cache", "show", "--no-all-versions", *packages]))
    if missing := sorted(set(packages) - set(records)):
        raise DemoImageError(f"apt has no candidate version of {', '.join(missing)}")
    debs = [records[name] for name in packages]
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [d for d in debs if not ((cache / d.filename).is_file() and _valid(cache, d))]
    if wanted:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
            _apt(
                [
                    "apt-get",
                    "download",
                    "-q",
                    "-o",
                    "APT::Sandbox::User=root",  # the temporary directory is root's alone
                    *(f"{d.package}={d.version}" for d in wanted),
                ],
                cwd=Path(tmp),
            )
            for deb in wanted:
                got = Path(tmp) / deb.filename
                if not got.is_file() or _sha256(got) != deb.sha256:
                    raise DemoImageError(f"apt-get download gave no valid {deb.filename}")
                os.replace(got, cache / deb.filename)
    return [cache / d.filename for d in debs]


def _valid(cache: Path, deb: Deb) -> bool:
    return _sha256(cache / deb.filename) == deb.sha256


# -- layers -----------------------------------------------------------------------------------


def usr_merged(path: str) -> str:
    """Where a file a package ships at `path` (relative to the root) lives in the merged-/usr
    root: bin/x -> usr/bin/x, lib64 -> usr/lib64, others unchanged."""
    if path.split("/", 1)[0] in MERGED:
        return f"usr/{path}"
    return path


def relinked(old_path: str, new_path: str, target: str) -> str:
    """The target of a symlink a package ships at `old_path`, for its place `new_path`: what
    it points to, usr-merged, absolute if it was, else relative to where the link now is;
    as the package wrote it when neither the link nor what it points to moves."""
    if target.startswith("/"):
        pointee = posixpath.normpath(target).lstrip("/")
        merged = usr_merged(pointee)
        return target if merged == pointee else f"/{merged}"
    pointee = posixpath.normpath(posixpath.join(posixpath.dirname(old_path), target))
    if pointee.startswith("../"):
        return target  # past the root: leave it as the package wrote it
    merged = usr_merged(pointee)
    if merged == pointee and new_path == old_path:
        return target
    return posixpath.relpath(merged, posixpath.dirname(new_path) or ".")


@dataclass
class Layer:
    """A root filesystem layer being assembled: path -> (entry, content)."""

    entries: dict[str, tuple[tarfile.TarInfo, bytes]] = field(default_factory=dict)

    def add(self, info: tarfile.TarInfo, data: bytes = b"") -> None:
        self.entries[info.name] = (info, data)

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        self.add(tar_entry(name, tarfile.DIRTYPE, mode))

    def add_file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.add(tar_entry(name, tarfile.REGTYPE, mode, size=len(data)), data)

    def add_symlink(self, name: str, target: str) -> None:
        self.add(tar_entry(name, tarfile.SYMTYPE, 0o777, linkname=target))

    def add_deb(self, members: Iterable[tuple[tarfile.TarInfo, bytes]]) -> None:
        """The files of one package (as `deb_members` reads them), usr-merged, docs left
        out; a hardlink becomes a copy of its file (sorting could put it first)."""
        shipped: dict[str, bytes] = {}
        for member, data in members:
            old = posixpath.normpath(member.name).lstrip("/")
            if old in (".", "") or old.startswith("../"):
                continue
            if any(old == d or old.startswith(d + "/") for d in EXCLUDED):
                continue
            if posixpath.basename(old).startswith(".wh."):
                continue  # would read as a whiteout
            new, mode = usr_merged(old), member.mode & 0o7777
            if member.isdir():
                self.add_dir(new, mode)
            elif member.isreg():
                shipped[old] = data
                self.add_file(new, data, mode)
            elif member.issym():
                self.add_symlink(new, relinked(old, new, member.linkname))
            elif member.islnk():
                source = posixpath.normpath(member.linkname).lstrip("/")
                if source not in shipped:
                    raise DemoImageError(f"hardlink {old} to {source}, not shipped before it")
                self.add_file(new, shipped[source], mode)
            # devices and fifos: none in these packages, and never wanted in a layer

    def tar(self) -> bytes:
        """The uncompressed layer: parents made where missing, entries in path order."""
        for name in list(self.entries):
            parent = posixpath.dirname(name)
            while parent and parent not in self.entries:
                self.add_dir(parent)
                parent = posixpath.dirname(parent)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.entries, key=lambda n: n.split("/")):
                info, data = self.entries[name]
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        return buf.getvalue()


def deb_members(deb: Path) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    """The entries of a .deb's data.tar and each regular file's content, in archive order."""
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        problem = ""
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    content = tar.extractfile(member) if member.isreg() else None
                    yield member, content.read() if content is not None else b""
            proc.stdout.read()  # the archive's padding: dpkg-deb must not block writing it
        except tarfile.TarError as exc:
            problem = str(exc)
            proc.stdout.close()  # dpkg-deb stops at its next write
        error = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode != 0 or problem:
        raise DemoImageError(f"dpkg-deb could not read {deb.name}: {error or problem}")


def skeleton(layer: Layer) -> None:
    """What a container root needs besides packages (the runtime bind-mounts /etc/hosts,
    /etc/hostname and /etc/resolv.conf, and mounts /proc, /sys and /dev)."""
    for name, mode in (
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ):
        layer.add_dir(name, mode)
    for name in MERGED:
        layer.add_dir(f"usr/{name}")
        layer.add_symlink(name, f"usr/{name}")
    for name, text in (
        ("etc/passwd", PASSWD),
        ("etc/group", GROUP),
        ("etc/nsswitch.conf", NSSWITCH),
    ):
        layer.add_file(name, text.encode())


def packages_layer(debs: Sequence[Path], base: bool = False) -> bytes:
    """One layer of the files of `debs` (and the root's skeleton for the base layer)."""
    layer = Layer()
    for deb in debs:
        layer.add_deb(deb_members(deb))
    if base:
        skeleton(layer)  # last: its modes (/tmp's 1777) win over what packages say
    return layer.tar()


def app_layer(app: Path = APP) -> bytes:
    layer = Layer()
    layer.add_dir("app")
    layer.add_file("app/app.py", app.read_bytes())
    return layer.tar()


# -- images -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """One demo image: its repository, layout directory, layers (bottom first, each with
    the history line it gets) and container config."""

    repository: str
    directory: str
    layers: tuple[tuple[bytes, str], ...]
    config: dict[str, object]


def write_layout(layout: Path, image: ImageSpec) -> None:
    """An OCI image layout holding `image` as the ref `latest`."""
    layout.mkdir(parents=True, exist_ok=True)
    descriptors: list[dict[str, object]] = []
    diff_ids: list[str] = []
    for raw, _ in image.layers:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        blob = gzip.compress(raw, compresslevel=6, mtime=0)
        descriptors.append({"mediaType": OCI_LAYER_GZIP, **put_blob(layout, blob)})
    config = {
        "architecture": host_arch(),
        "os": "linux",
        "created": CREATED,
        "config": image.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": what} for _, what in image.layers],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **put_blob(layout, canonical_json(config))},
        "layers": descriptors,
    }
    top = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **put_blob(layout, canonical_json(manifest)),
                "annotations": {REF_ANNOTATION: "latest"},
            }
        ],
    }
    (layout / "index.json").write_bytes(canonical_json(top))
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))


def image_size(layout: Path) -> int:
    """Bytes of the `latest` image's config and layers in `layout`, as a registry holds it."""

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    (entry,) = json.loads((layout / "index.json").read_bytes())["manifests"]
    manifest = json.loads(blob(entry["digest"]))
    return sum(int(d["size"]) for d in [manifest["config"], *manifest["layers"]])


def _history(what: str, debs: Sequence[Path]) -> str:
    names = " ".join(sorted(d.name.split("_", 1)[0] for d in debs))
    return f"demo_images: {what}: {names}" if names else f"demo_images: {what}"


def image_specs(
    web_debs: Sequence[Path], redis_debs: Sequence[Path], app: Path = APP
) -> list[ImageSpec]:
    """Both images from their .debs: those in both lists make the shared base layer."""
    shared = sorted(set(web_debs) & set(redis_debs))
    base = (packages_layer(shared, base=True), _history("base", shared))
    web_only = sorted(set(web_debs) - set(shared))
    redis_only = sorted(set(redis_debs) - set(shared))
    return [
        ImageSpec(
            "demo/web",
            "web",
            (
                base,
                (packages_layer(web_only), _history("web", web_only)),
                (app_layer(app), "demo_images: /app/app.py"),
            ),
            {
                "Env": [PATH_ENV, "NAME=World"],
                "Cmd": ["python3", "/app/app.py"],
                "WorkingDir": "/app",
                "ExposedPorts": {"80/tcp": {}},
            },
        ),
        ImageSpec(
            "demo/redis",
            "redis",
            (base, (packages_layer(redis_only), _history("redis", redis_only))),
            {"Env": [PATH_ENV], "Cmd": list(REDIS_CMD), "ExposedPorts": {"6379/tcp": {}}},
        ),
    ]


def _debs(deb_cache: Path) -> tuple[list[Path], list[Path]]:
    """The .debs of web and of redis."""
    web, redis = resolve(WEB_PACKAGES, REDIS_PACKAGES)
    every = sorted({*web, *redis})
    files = dict(zip(every, fetch(every, deb_cache), strict=True))
    return [files[name] for name in web], [files[name] for name in redis]


def build_layouts(output: Path, deb_cache: Path = DEB_CACHE) -> dict[str, Path]:
    """Build both images into output/web and output/redis; repository -> layout."""
    web_debs, redis_debs = _debs(deb_cache)
    return _write(output, image_specs(web_debs, redis_debs))


def _write(output: Path, specs: Sequence[ImageSpec]) -> dict[str, Path]:
    layouts: dict[str, Path] = {}
    for spec in specs:
        write_layout(output / spec.directory, spec)
        layouts[spec.repository] = output / spec.directory
    return layouts


def _inputs_key(web_debs: Sequence[Path], redis_debs: Sequence[Path], app: Path) -> str:
    """What the layouts are made of: the .debs (their names carry the versions), the app
    and this builder's own code."""
    digest = hashlib.sha256()
    for part in (web_debs, redis_debs):
        digest.update(canonical_json([d.name for d in part]))
    for source in (app, Path(__file__), Path(__file__).parent / "busybox_image.py"):
        digest.update(hashlib.sha256(source.read_bytes()).digest())
    return digest.hexdigest()[:16]


def cached_layouts(
    cache: Path = LAYOUT_CACHE, deb_cache: Path = DEB_CACHE, app: Path = APP
) -> dict[str, Path]:
    """The layouts built from the current .debs and app, built now if `cache` lacks them
    (an older build is replaced); repository -> layout."""
    web_debs, redis_debs = _debs(deb_cache)
    done = cache / _inputs_key(web_debs, redis_debs, app)
    layouts = {"demo/web": done / "web", "demo/redis": done / "redis"}
    if done.is_dir():  # made by a rename: complete
        return layouts
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        _write(tmp, image_specs(web_debs, redis_debs, app))
        for old in cache.iterdir():
            if not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)  # an older build
        try:
            os.rename(tmp, done)
        except OSError:
            if not done.is_dir():
                raise  # else a concurrent build renamed its own first: as good
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return layouts


def seed_demo_images(lab: str, address: str) -> None:
    """Push `demo/web:latest` and `demo/redis:latest` to the lab's registry at `address`."""
    base = [
        registry.SKOPEO_BIN,
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
    ]
    for repository, layout in sorted(cached_layouts().items()):
        dest = f"docker://{address}:{registry.PORT}/{repository}:latest"
        registry.run_in(registry.registry_netns(lab), [*base, f"oci:{layout}:latest", dest], 300)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.demo_images",
        description="Build the demo app's images (demo/web, demo/redis) as OCI image layouts "
        "in DIR/web and DIR/redis, from Debian packages.",
    )
    parser.add_argument("--output", type=Path, required=True, metavar="DIR")
    parser.add_argument("--deb-cache", type=Path, default=DEB_CACHE, help=f"default {DEB_CACHE}")
    args = parser.parse_args(argv)
    began = time.monotonic()
    try:
        layouts = build_layouts(args.output, args.deb_cache)
    except (MachineError, OSError) as exc:
        print(f"demo_images: error: {exc}", file=sys.stderr)
        return 1
    for repository, layout in layouts.items():
        print(f"{repository}: {layout} ({image_size(layout) / 2**20:.1f} MiB compressed)")
    print(f"built in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
