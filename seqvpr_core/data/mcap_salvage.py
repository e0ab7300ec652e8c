"""Open rosbags readers, salvaging MCAP files that lost their footer.

A recorder killed mid-write, or a partial copy, leaves an MCAP file without
its summary and footer; ``rosbags`` then refuses the whole file. Its complete
records are still valid, so we scan them from the start as an unindexed file
and let reading stop at the first cut record. sqlite3 bags need no help:
SQLite itself reads what is intact.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def open_reader(reader) -> None:
    """``reader.open()``; a truncated MCAP storage is reopened in salvage mode."""
    from rosbags.rosbag2 import ReaderError

    try:
        reader.open()
        return
    except ReaderError as exc:
        mcap = _mcap_file(Path(reader.path))
        if mcap is None:
            raise
        error = exc
    salvage = SalvageMcapReader.make(mcap)
    try:
        salvage.open()
    except ReaderError as exc:
        raise ReaderError(f"{error} and nothing is salvageable: {exc}") from None
    LOG.warning("%s: %s; reading its complete records only", mcap, error)
    reader.storage = salvage
    reader.is_open = True


def _mcap_file(path: Path) -> Path | None:
    if path.suffix == ".mcap":
        return path
    if path.is_dir():
        files = sorted(path.glob("*.mcap"))
        if len(files) == 1:
            return files[0]
    return None


class SalvageMcapReader:
    """Factory for a rosbags ``McapReader`` subclass that tolerates a missing footer."""

    @staticmethod
    def make(path: Path):
        from rosbags.rosbag2.errors import ReaderError
        from rosbags.rosbag2.storage_mcap import McapReader, Statistics

        class _Reader(McapReader):
            def _open(self) -> None:
                try:
                    super()._open()
                    return
                except ReaderError:
                    if not self.data_start:  # not even a valid MCAP header: nothing to save
                        raise
                self.bio.seek(0, 2)
                self.data_end = self.bio.tell()
                self.schemas.clear()
                self.channels.clear()
                self.chunks.clear()
                self.connections.clear()
                with contextlib.suppress(ReaderError):  # the cut record; what precedes stays
                    self.meta_scan()
                if not self.connections:
                    raise ReaderError("truncated MCAP without a complete chunk of "
                                      "messages before the damage")
                self.statistics = Statistics(0, len(self.schemas), len(self.channels), 0, 0,
                                             0, 0, 0, {})

        return _Reader(path)
