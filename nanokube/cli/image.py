"""``nanokube image``: build (rootfs/build), import (OCI layout / docker save), ls and rm local images.

Like ``ctr images`` / ``crictl images`` for the local store in ``/var/lib/nanokube/images``.
The command only parses arguments and prints; the work is in nanokube.runtime.images.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from nanokube.runtime.images import (ImageImportError, ImageStore, InvalidReference, human_size, import_image,
                                     short_id, tree_size)

RECIPES = Path(__file__).resolve().parents[2] / "rootfs"
BUILDABLE = ("busybox", "nginx", "python")


def add_image_parser(sub: Any, *, images_dir: Path) -> None:
    i = sub.add_parser("image", help="build, import, list and remove local images")
    isub = i.add_subparsers(dest="image_cmd", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--images-dir", type=Path, default=images_dir)
        return p
    ib = common(isub.add_parser("build", help=f"build images from rootfs/ recipes ({', '.join(BUILDABLE)})"))
    ib.add_argument("names", nargs="*", metavar="NAME", help="default: all")
    ii = common(isub.add_parser("import", help="import an OCI image layout (dir or tar) or a docker save tarball"))
    ii.add_argument("file", type=Path)
    ii.add_argument("--name", help="NAME[:TAG] (default: the name the archive carries)")
    for alias in ("ls", "list"):
        common(isub.add_parser(alias, help="list local images"))
    ir = common(isub.add_parser("rm", help="remove local images"))
    ir.add_argument("names", nargs="+", metavar="NAME")


def cmd_image(args: Any) -> int:
    store = ImageStore(args.images_dir)
    if args.image_cmd == "build":
        bad = [n for n in args.names if n not in BUILDABLE]
        if bad:
            print(f"nanokube image build: no recipe for {', '.join(bad)} (available: {', '.join(BUILDABLE)})",
                  file=sys.stderr)
            return 2
        argv = ["bash", str(RECIPES / "build"), "--images-dir", str(args.images_dir), *args.names]
        return subprocess.run(argv).returncode
    if args.image_cmd == "import":
        try:
            img = import_image(args.file, args.images_dir, name=args.name)
        except (ImageImportError, InvalidReference, OSError) as e:
            print(f"nanokube image import: {e}", file=sys.stderr)
            return 1
        print(f"imported {img.name}:{img.tag} ({short_id(img.id)}, {human_size(tree_size(img.rootfs))})")
        return 0
    if args.image_cmd == "rm":
        rc = 0
        for name in args.names:
            try:
                gone = store.remove(name)
            except InvalidReference as e:
                gone, rc = False, 1
                print(f"nanokube image rm: {e}", file=sys.stderr)
                continue
            if gone:
                print(f"deleted {name}")
            else:
                print(f'nanokube image rm: no such image "{name}"', file=sys.stderr)
                rc = 1
        return rc
    rows = [("NAME", "TAG", "ID", "SIZE")]
    for name in store.list():
        img = store.resolve(name)
        if img is not None:
            rows.append((name, img.tag, short_id(img.id), human_size(tree_size(img.rootfs))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[3])
    return 0
