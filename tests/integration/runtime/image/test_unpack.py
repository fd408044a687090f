"""Layer unpacking as root, for real: hostile layers are refused by entry name with nothing
written outside (the test checks the paths they aimed at) and no layer dir left; a benign
layer keeps modes, owners, times, xattrs, links, devices, whiteouts and opaque dirs; and
overlayfs, mounting two unpacked layers, hides what the upper one whites out."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from pathlib import Path

import pytest

from common import libc
from runtime.image.errors import LayerError, UnsafeLayerEntry
from runtime.image.layer_store import LayerStore
from tests.integration.host_snapshot import HostSnapshot
from tests.integration.runtime.image.crafted import Entry, opener, unpack

DIR, SYM, LNK = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside the layer store that hostile layers aim at."""
    target = tmp_path / "victim"
    target.mkdir()
    (target / "passwd").write_text("original\n")
    return target


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "root" / "images")


def _fingerprint(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file below `path` with its mode, link count and content."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(p)] = (st.st_mode, st.st_nlink, data)
    return out


def _etc_passwd() -> tuple[int, bytes]:
    st = os.stat("/etc/passwd")
    return st.st_mtime_ns, hashlib.sha256(Path("/etc/passwd").read_bytes()).digest()


def hostile_layers(victim: Path) -> dict[str, tuple[list[Entry], str, str]]:
    """name -> (entries, the entry the error must name, what the error must say)."""
    up = "../" * 6  # from images/layers/.tmp-<chain>/diff past tmp_path
    rel_victim = f"{up}victim"
    return {
        "path traversal": ([Entry(f"{rel_victim}/evil", data=b"x")], f"{rel_victim}/evil", "'..'"),
        "traversal inside a name": (
            [Entry("a/../../b", data=b"x")],
            "a/../../b",
            "'..'",
        ),
        "absolute path": ([Entry(f"{victim}/evil", data=b"x")], f"{victim}/evil", "absolute"),
        "absolute path into /etc": ([Entry("/etc/passwd", data=b"x")], "/etc/passwd", "absolute"),
        "symlink parent to /etc": (
            [Entry("a", SYM, linkname="/etc"), Entry("a/passwd", data=b"pwned\n")],
            "a/passwd",
            "leads outside",
        ),
        "symlink parent climbing out": (
            [Entry("a", SYM, linkname=rel_victim), Entry("a/passwd", data=b"pwned\n")],
            "a/passwd",
            "leads outside",
        ),
        "symlink chain climbing out": (
            [
                Entry("d", DIR, mode=0o755),
                Entry("d/up", SYM, linkname="../.."),
                Entry("d/up/x", data=b"x"),
            ],
            "d/up/x",
            "leads outside",
        ),
        "absolute symlink then a write through it": (
            [Entry("link", SYM, linkname=str(victim)), Entry("link/passwd", data=b"pwned\n")],
            "link/passwd",
            "leads outside",
        ),
        "absolute symlink then a dir through it": (
            [Entry("link", SYM, linkname=str(victim)), Entry("link/newdir", DIR, mode=0o755)],
            "link/newdir",
            "leads outside",
        ),
        "hardlink to an absolute path": (
            [Entry("h", LNK, linkname=str(victim / "passwd"))],
            "h",
            "absolute",
        ),
        "hardlink climbing out": (
            [Entry("h", LNK, linkname=f"{rel_victim}/passwd")],
            "h",
            "'..'",
        ),
        "hardlink through a symlink parent": (
            [Entry("s", SYM, linkname=str(victim)), Entry("h", LNK, linkname="s/passwd")],
            "h",
            "leads outside",
        ),
        "whiteout of ..": ([Entry(".wh..."), Entry("x", data=b"x")], ".wh...", "whiteout of '..'"),
        "whiteout traversal": ([Entry(".wh.../..")], ".wh.../..", "'..'"),
        "whiteout through a symlink parent": (
            [Entry("w", SYM, linkname=str(victim)), Entry("w/.wh.passwd")],
            "w/.wh.passwd",
            "leads outside",
        ),
        "opaque marker through a symlink parent": (
            [Entry("w", SYM, linkname=str(victim)), Entry("w/.wh..wh..opq")],
            "w/.wh..wh..opq",
            "leads outside",
        ),
        "overlayfs xattr": (
            [Entry("f", data=b"x", xattrs={"trusted.overlay.redirect": b"/etc"})],
            "f",
            "overlayfs' own xattr",
        ),
    }


def test_hostile_layers_are_refused_and_touch_nothing(
    store: LayerStore, victim: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "blobs"
    scratch.mkdir()
    victim_before = _fingerprint(victim)
    etc_before = _etc_passwd()
    cases = hostile_layers(victim)
    for name, (entries, entry, problem) in cases.items():
        with pytest.raises(UnsafeLayerEntry) as err:
            unpack(store, scratch, entries)
        assert err.value.entry == entry, name
        assert repr(entry) in str(err.value), name
        assert problem in str(err.value), (name, str(err.value))
        assert _fingerprint(victim) == victim_before, name
        assert _etc_passwd() == etc_before, name
        left = [p.name for p in store.layers_dir.iterdir() if not p.name.endswith(".lock")]
        assert left == [], (name, left)
        assert not store.links_dir.exists() or list(store.links_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs", "root", "victim"]
    assert not Path("/evil").exists()


def test_malformed_layers_are_layer_errors(store: LayerStore, tmp_path: Path) -> None:
    blob = tmp_path / "garbage.gz"
    blob.write_bytes(gzip.compress(b"this is no tar archive at all" * 100)[:-20])
    with pytest.raises(LayerError, match="not a valid"):
        store.unpack("sha256:" + "1" * 64, "sha256:" + "1" * 64, opener(blob))
    assert [p.name for p in store.layers_dir.iterdir() if not p.name.endswith(".lock")] == []


# VFS_CAP_REVISION_2, effective, permitted CAP_SETUID|CAP_NET_BIND_SERVICE (not UTF-8).
FILE_CAPS = bytes.fromhex("0100000280040000000000000000000000000000")

BENIGN = [
    Entry("usr", DIR, mode=0o755),
    Entry("usr/bin", DIR, mode=0o755, mtime=1600000000),
    Entry("usr/bin/su", data=b"su", mode=0o4755),
    Entry("usr/bin/wall", data=b"wall", mode=0o2755, gid=5),
    Entry("tmp", DIR, mode=0o1777),
    Entry("home/user/notes", data=b"mine", mode=0o600, uid=1000, gid=1000, mtime=1500000000),
    Entry("etc", DIR, mode=0o755),
    Entry(
        "etc/tool",
        data=b"tool",
        mode=0o755,
        xattrs={"user.origin": b"shoal", "security.capability": FILE_CAPS},
    ),
    Entry("etc/tool-hardlink", LNK, linkname="etc/tool"),
    Entry("etc/abs", SYM, linkname="/etc/passwd", mode=0o777),
    Entry("etc/rel", SYM, linkname="../usr/bin", mode=0o777),
    Entry("etc/rel/through-relative-symlink", data=b"ok"),  # stays inside: allowed
    Entry("etc/.wh.gone"),
    Entry("var/cache", DIR, mode=0o750),
    Entry("var/cache/.wh..wh..opq"),
    Entry("var/cache/fresh", data=b"fresh"),
    Entry("run", DIR, mode=0o755),
    Entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
]


def test_benign_layer_is_extracted_faithfully(store: LayerStore, tmp_path: Path) -> None:
    chain = unpack(store, tmp_path, BENIGN)
    root = store.diff_dir(chain)
    assert store.link(chain).resolve() == root.resolve()
    assert len(store.link(chain).name) == 26

    def st(rel: str) -> os.stat_result:
        return (root / rel).lstat()

    assert stat.S_IMODE(st("usr/bin/su").st_mode) == 0o4755
    assert (st("usr/bin/su").st_uid, st("usr/bin/su").st_gid) == (0, 0)
    assert stat.S_IMODE(st("usr/bin/wall").st_mode) == 0o2755
    assert st("usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777
    assert (st("home/user/notes").st_uid, st("home/user/notes").st_gid) == (1000, 1000)
    assert st("home/user/notes").st_mtime == 1500000000
    assert stat.S_IMODE(st("home").st_mode) == 0o755  # made for a parent that was missing
    assert st("usr/bin").st_mtime == 1600000000  # set after its children were written
    assert os.getxattr(root / "etc/tool", "user.origin") == b"shoal"
    assert os.getxattr(root / "etc/tool", "security.capability") == FILE_CAPS
    assert st("etc/tool-hardlink").st_ino == st("etc/tool").st_ino
    assert st("etc/tool").st_nlink == 2
    assert os.readlink(root / "etc/abs") == "/etc/passwd"  # absolute symlinks stay as they are
    assert os.readlink(root / "etc/rel") == "../usr/bin"
    assert (root / "usr/bin/through-relative-symlink").read_bytes() == b"ok"
    gone = st("etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert (gone.st_uid, gone.st_gid) == (0, 0)
    assert not (root / "etc/.wh.gone").exists()
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not (root / "var/cache/.wh..wh..opq").exists()
    assert stat.S_IMODE(st("var/cache").st_mode) == 0o750
    assert stat.S_ISFIFO(st("run/fifo").st_mode)
    info = store.info(chain)
    assert info.size == sum(len(e.data) for e in BENIGN if e.type == tarfile.REGTYPE)
    # Unpacking the same layer again is a no-op.
    assert not store.unpack(chain, info.diff_id, lambda: pytest.fail("unpacked twice"))


def test_overlay_of_two_layers_applies_whiteouts(
    store: LayerStore, tmp_path: Path, host_unchanged: HostSnapshot
) -> None:
    lower = unpack(
        store,
        tmp_path,
        [
            Entry("etc", DIR, mode=0o755),
            Entry("etc/gone", data=b"old"),
            Entry("etc/kept", data=b"kept"),
            Entry("var/cache/old", data=b"old"),
        ],
    )
    upper = unpack(
        store,
        tmp_path,
        [
            Entry("etc", DIR, mode=0o755),
            Entry("etc/.wh.gone"),
            Entry("var/cache", DIR, mode=0o755),
            Entry("var/cache/.wh..wh..opq"),
            Entry("var/cache/new", data=b"new"),
        ],
    )
    target = tmp_path / "merged"
    target.mkdir()
    options = f"lowerdir={store.link(upper)}:{store.link(lower)}"
    libc.mount("overlay", str(target), "overlay", libc.MS_RDONLY, options)
    try:
        assert sorted(os.listdir(target / "etc")) == ["kept"]
        assert not (target / "etc" / "gone").exists()
        assert sorted(os.listdir(target / "var" / "cache")) == ["new"]
        assert (target / "etc" / "kept").read_bytes() == b"kept"
    finally:
        libc.umount(str(target))
