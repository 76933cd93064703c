"""``nanokube image``: build the local images (rootfs/build) and list them."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from nanokube.runtime.images import ImageStore

RECIPES = Path(__file__).resolve().parents[2] / "rootfs"


def cmd_image(args: Any) -> int:
    if args.image_cmd == "build":
        if args.name != "busybox":
            raise SystemExit(f"nanokube image build: no recipe for {args.name!r} (available: busybox)")
        return subprocess.run(["bash", str(RECIPES / "build"), "--images-dir", str(args.images_dir)]).returncode
    for name in ImageStore(args.images_dir).list():
        print(name)
    return 0
