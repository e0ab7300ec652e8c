"""``manifest.json`` of a map directory: its fields, and their check on load.

Every field has a type, every number a range; unknown fields are refused (a typo
would otherwise be silently ignored) and errors name the file and the field. A new
field goes into :data:`REQUIRED` or :data:`OPTIONAL` (:data:`MODEL_FIELDS` inside
``model``), with its check in ``_check_values``, and bumps :data:`VERSION` if old
readers must not read the map.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..catalog import METRICS
from ..inputs import InputError, expect, fields, read_json
from ..limits import DIMENSION, NON_NEGATIVE_COUNT, STRIDE, WINDOW_LENGTH
from ..outputs import MAP_FORMAT

FORMAT = MAP_FORMAT
VERSION = 1
MANIFEST, INDEX, KEYFRAMES = "manifest.json", "index.faiss", "keyframes.csv"
MODEL = "model.pt"  # the checkpoint of the model that made the descriptors

REQUIRED: dict[str, Any] = {"format": str, "version": int, "model": dict,
                            "descriptor_dim": int, "metric": str, "index": str, "count": int,
                            "files": dict}
OPTIONAL: dict[str, Any] = {"trained": bool, "window": dict, "sources": list, "created": str,
                            "seqvpr_version": str}
MODEL_FIELDS: dict[str, Any] = {"name": str, "config": dict, "fingerprint": str, "spec": str,
                                "file": str}
WINDOW_FIELDS = ("min_len", "max_len", "stride")
SHA256 = re.compile(r"[0-9a-f]{64}")


class MapFormatError(ValueError):
    """A map directory is missing, damaged, or made by a different model."""


def read_manifest(root: Path) -> dict[str, Any]:
    """The checked manifest of map directory ``root``; :class:`MapFormatError` otherwise."""
    path = root / MANIFEST
    if not os.path.lexists(path):
        raise MapFormatError(f"{path} is missing: {root} is not a seqvpr map")
    try:
        manifest = read_json(path, "map manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InputError(f"{path} is not a seqvpr map manifest (no \"format\": "
                             f"\"{FORMAT}\")")
        if manifest.get("version") != VERSION:
            raise InputError(f"{path} has map format version {manifest.get('version')!r}; "
                             f"this seqvpr reads version {VERSION}")
        fields(manifest, str(path), REQUIRED, OPTIONAL)
        _check_values(manifest, path)
    except (InputError, OSError) as exc:
        raise MapFormatError(str(exc)) from None
    return manifest


def _check_values(m: dict[str, Any], path: Path) -> None:
    where = f"{path}:"
    try:
        DIMENSION.check(f"{where} descriptor_dim", m["descriptor_dim"])
        NON_NEGATIVE_COUNT.check(f"{where} count", m["count"])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if m["metric"] not in METRICS:
        raise InputError(f"{where} metric must be one of {METRICS}, got {m['metric']!r}")
    fields(m["model"], f"{where} model", {}, MODEL_FIELDS)
    for name, digest in m["files"].items():
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise InputError(f"{where} files: {name!r} is not a file name inside the map")
        if not (isinstance(digest, str) and SHA256.fullmatch(digest)):
            raise InputError(f"{where} files: {name} must have a sha256 hex digest, got "
                             f"{digest!r}")
    missing = [n for n in (INDEX, KEYFRAMES) if n not in m["files"]]
    if missing:
        raise InputError(f"{where} files must list {missing}")
    model_file = m["model"].get("file")
    if model_file is not None and (model_file != MODEL or MODEL not in m["files"]):
        raise InputError(f"{where} model.file must be {MODEL!r}, listed in files with its "
                         f"sha256, got {model_file!r}")
    for i, source in enumerate(m.get("sources", [])):
        expect(source, f"{where} sources[{i}]", str)
    window = m.get("window") or {}
    if window:
        fields(window, f"{where} window", dict.fromkeys(WINDOW_FIELDS, int))
        try:
            WINDOW_LENGTH.check(f"{where} window.min_len", window["min_len"])
            WINDOW_LENGTH.check(f"{where} window.max_len", window["max_len"])
            STRIDE.check(f"{where} window.stride", window["stride"])
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if window["min_len"] > window["max_len"]:
            raise InputError(f"{where} window.min_len {window['min_len']} > window.max_len "
                             f"{window['max_len']}")


# Encoder defaults that changed after maps began to be written: name -> {option: the
# default of the maps written before}. Those maps carry no model.pt (it came in the same
# release) and rebuild their model from the recorded config, so without this they would
# silently get today's descriptors; maps with model.pt carry their model whole.
EARLIER_DEFAULTS: dict[str, dict[str, Any]] = {
    "pixels": {"normalise": "patch"},  # local_mean since benchmarks/pixels_defaults.py
}


def pin_earlier_defaults(model: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` record of a map without model.pt, with the defaults it was written
    under made explicit and its fingerprint re-derived, or the record unchanged when no
    default changed or the fingerprint is not that of the recorded config (the ordinary
    fingerprint check then refuses the model)."""
    config = model.get("config") or {}
    encoder = config.get("encoder")
    name = encoder if isinstance(encoder, str) else (encoder or {}).get("name")
    if name not in EARLIER_DEFAULTS:
        return model
    from ..models import SequenceModel  # torch: only for maps that need it

    try:
        recorded = SequenceModel(config, pretrained=False)
    except (ValueError, TypeError):
        return model  # building it again reports the problem where it is used
    encoder = recorded.config["encoder"]
    earlier = {k: v for k, v in EARLIER_DEFAULTS[name].items() if k not in encoder}
    if not earlier or recorded.fingerprint() != model.get("fingerprint"):
        return model
    pinned = {**recorded.config, "encoder": {**encoder, **earlier}}
    return {**model, "config": pinned,
            "fingerprint": SequenceModel(pinned, pretrained=False).fingerprint()}
