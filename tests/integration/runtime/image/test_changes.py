"""Diff and commit layers from real overlayfs upper dirs (whiteouts and opaque dirs need
root): `diff` reads them as overlayfs would, and a committed layer tar unpacks back to the
same upper dir."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

from runtime.image import digests
from runtime.image.changes import Change, diff
from runtime.image.layer_store import LayerStore
from runtime.image.layer_tar import write_layer
from tests.integration.runtime.image.crafted import Entry, opener, unpack

DIR = tarfile.DIRTYPE


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def opaque(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")


def test_diff_reads_the_upper_dir_as_overlayfs_does(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "images")
    bottom = unpack(
        store,
        tmp_path,
        [
            Entry("etc", DIR, mode=0o755),
            Entry("etc/a", data=b"a"),
            Entry("etc/b", data=b"b"),
            Entry("opt/x/y", data=b"y"),
            Entry("usr/lib/f", data=b"f"),
            Entry("srv", data=b"a file, later a dir"),
        ],
    )
    top = unpack(
        store,
        tmp_path,
        [
            Entry("etc/.wh.b"),  # b is gone in the image
            Entry("opt", DIR, mode=0o755),
            Entry("opt/.wh..wh..opq"),  # opt/x is hidden in the image
            Entry("opt/new", data=b"n"),
        ],
    )
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    whiteout(upper / "etc" / "a")
    (upper / "etc" / "b").write_text("back again")
    (upper / "opt" / "x").mkdir(parents=True)
    opaque(upper / "usr")
    (upper / "usr" / "only").write_text("only")
    (upper / "srv").mkdir()

    lowers = [store.link(top), store.link(bottom)]
    assert diff(upper, lowers) == [
        Change("/etc", "C"),
        Change("/etc/a", "D"),
        Change("/etc/b", "A"),  # whited out below, so added again
        Change("/opt", "C"),
        Change("/opt/x", "A"),  # hidden by the opaque opt below
        Change("/srv", "C"),  # a file became a dir
        Change("/usr", "C"),
        Change("/usr/lib", "D"),  # the upper usr is opaque
        Change("/usr/only", "A"),
    ]
    assert [str(c) for c in diff(upper, lowers)][:2] == ["C /etc", "D /etc/a"]


def test_committed_layer_unpacks_to_the_same_tree(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "file").write_text("content")
    os.setxattr(upper / "etc" / "file", "user.note", b"kept")
    os.setxattr(upper / "etc" / "file", "trusted.overlay.origin", b"overlay bookkeeping")
    os.link(upper / "etc" / "file", upper / "etc" / "file2")
    os.symlink("/etc/passwd", upper / "etc" / "link")
    whiteout(upper / "etc" / "gone")
    opaque(upper / "var" / "cache")
    (upper / "var" / "cache" / "new").write_text("new")
    (upper / "bin").mkdir()
    (upper / "bin" / "x").write_text("x")
    os.chown(upper / "bin" / "x", 0, 5)
    os.chmod(upper / "bin" / "x", 0o4755)
    os.mkfifo(upper / "etc" / "fifo")

    blob = tmp_path / "layer.tar.gz"
    with open(blob, "wb") as out:
        written = write_layer(upper, out)
    data = blob.read_bytes()
    assert written.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert written.size == len(data)

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "etc/.wh.gone" in members and "etc/gone" not in members
    assert "var/cache/.wh..wh..opq" in members
    assert members["etc/file2"].islnk() and members["etc/file2"].linkname == "etc/file"
    assert members["etc/link"].issym() and members["etc/link"].linkname == "/etc/passwd"
    xattrs = {k for k in members["etc/file"].pax_headers if k.startswith("SCHILY.xattr.")}
    assert xattrs == {"SCHILY.xattr.user.note"}  # overlayfs' own xattrs are not committed

    store = LayerStore(tmp_path / "images")
    (chain_id,) = digests.chain_ids([written.diff_id])
    store.unpack(chain_id, written.diff_id, opener(blob))
    root = store.diff_dir(chain_id)
    gone = (root / "etc" / "gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(root / "var" / "cache", "trusted.overlay.opaque") == b"y"
    assert (root / "var" / "cache" / "new").read_text() == "new"
    assert os.getxattr(root / "etc" / "file", "user.note") == b"kept"
    assert (root / "etc" / "file2").stat().st_ino == (root / "etc" / "file").stat().st_ino
    assert os.readlink(root / "etc" / "link") == "/etc/passwd"
    x = (root / "bin" / "x").stat()
    assert stat.S_IMODE(x.st_mode) == 0o4755 and x.st_gid == 5
    assert stat.S_ISFIFO((root / "etc" / "fifo").lstat().st_mode)
