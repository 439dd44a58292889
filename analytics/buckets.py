"""Find the time buckets under flumen's final directory and which of them are complete.

A bucket is a folder rendered from a time-based path template (`dt=%Y-%m-%d/hr=%H`, or any
`%Y/%m/%d/%H`-like layout) that directly holds final files (FINAL_GLOB) or the completeness
marker. flumen writes the marker (default `_COMPLETE`, an empty file) into a bucket once every
partition of the topic has committed past the bucket's end plus `allowed_lateness_s`; records
that arrive later go to `late_path`, never into the marked bucket. So a marked bucket's set of
final files is final, and a batch job over it sees all of it.

Listing goes through the Hadoop FileSystem of the Spark session (hdfs:// and local paths alike).
Hidden names (`_`/`.` prefix, `._COPYING_`) are skipped as Spark skips them: flumen's in-use
folder `_flumen/` is never a bucket and the marker is never read as data.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import List, Optional

from flumen_input import FINAL_GLOB

# Bound on folders visited, so a wrong --input (e.g. `/`) fails loudly instead of walking HDFS.
FOLDERS_VISITED_MAX = 100_000


@dataclass(frozen=True)
class Bucket:
    path: str           # fully qualified folder URI, as the Hadoop FileSystem returns it
    rel: str            # path relative to the base, e.g. "dt=2024-11-24/hr=10" ("." = the base)
    final_files: int    # final files directly in the folder
    final_bytes: int
    marked: bool        # the marker file is present

    @property
    def hive_style(self) -> bool:
        """Every folder level between the base and the bucket is `key=value`."""
        return self.rel != "." and all("=" in part for part in self.rel.split("/"))


def hidden(name: str) -> bool:
    return name.startswith("_") or name.startswith(".") or name.endswith("._COPYING_")


def find_buckets(spark, base: str, marker: Optional[str]) -> List[Bucket]:
    """Every folder under `base` (itself included) that holds final files or `marker`, sorted
    by relative path."""
    jvm = spark._jvm
    root = jvm.org.apache.hadoop.fs.Path(base)
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
    root = fs.makeQualified(root)
    if not fs.exists(root):
        raise FileNotFoundError(f"input folder {base} does not exist")
    prefix = root.toString().rstrip("/")
    found: List[Bucket] = []
    stack, visited = [root], 0
    while stack:
        folder = stack.pop()
        visited += 1
        if visited > FOLDERS_VISITED_MAX:
            raise RuntimeError(f"more than {FOLDERS_VISITED_MAX} folders under {base}: wrong --input?")
        n, size, marked = 0, 0, False
        for st in fs.listStatus(folder):
            name = st.getPath().getName()
            if st.isDirectory():
                if not hidden(name):
                    stack.append(st.getPath())
            elif marker and name == marker:
                marked = True
            elif not hidden(name) and fnmatch.fnmatchcase(name, FINAL_GLOB):
                n, size = n + 1, size + st.getLen()
        if n or marked:
            uri = folder.toString().rstrip("/")
            rel = uri[len(prefix):].lstrip("/") or "."
            found.append(Bucket(uri, rel, n, size, marked))
    return sorted(found, key=lambda b: b.rel)


def split_complete(buckets: List[Bucket], require_marker: bool):
    """(to process, skipped as incomplete). Without require_marker every bucket is processed."""
    if not require_marker:
        return list(buckets), []
    return [b for b in buckets if b.marked], [b for b in buckets if not b.marked]
