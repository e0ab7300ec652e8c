"""Dataset readers; importing this package registers them (see :mod:`..pairs`)."""

from . import folder_csv, msls, nordland, nuscenes, robotcar  # noqa: F401  (registration on import)
