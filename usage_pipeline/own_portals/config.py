"""$USAGE_DATA_DIR/portals.yaml: the producer's own portals. No file, no own portal."""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

KINDS = ("ods", "ckan")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class PortalsConfigError(ValueError):
    """portals.yaml is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class OwnPortal:
    """One portal of portals.yaml. The key itself is read from the environment when used, never stored."""

    name: str
    kind: str
    url: str
    domain: str
    api_key_env: str | None = None

    def api_key(self) -> str | None:
        """The key or token, from the environment variable named in portals.yaml (None: public data only)."""
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None


def load_portals(path: Path) -> list[OwnPortal]:
    """Read and check portals.yaml; a missing file means no own portal."""
    if not path.exists():
        return []
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise PortalsConfigError(f"{path}: not valid YAML: {error}") from None
    entries = document.get("portals") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PortalsConfigError(f"{path}: expected a `portals:` list")
    portals: list[OwnPortal] = []
    for index, entry in enumerate(entries):
        where = f"{path}: portals[{index}]"
        if not isinstance(entry, dict):
            raise PortalsConfigError(f"{where}: expected a mapping with name, kind and url")
        unknown = set(entry) - {"name", "kind", "url", "domain", "api_key_env"}
        if unknown:
            raise PortalsConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        name, kind, url = (str(entry.get(key) or "").strip() for key in ("name", "kind", "url"))
        if not _NAME.match(name):
            raise PortalsConfigError(f"{where}.name: {name!r} must be a short label (a-z, 0-9, - and _)")
        if kind not in KINDS:
            raise PortalsConfigError(f"{where}.kind: {kind!r} must be one of {list(KINDS)}")
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise PortalsConfigError(f"{where}.url: {url!r} is not an http(s) URL")
        if name in {portal.name for portal in portals}:
            raise PortalsConfigError(f"{where}.name: {name!r} is used twice")
        key_env = entry.get("api_key_env")
        if key_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key_env)):
            raise PortalsConfigError(f"{where}.api_key_env: the NAME of an environment variable, not the key itself")
        portals.append(
            OwnPortal(
                name=name,
                kind=kind,
                url=url.rstrip("/"),
                domain=str(entry.get("domain") or parts.hostname).lower(),
                api_key_env=str(key_env) if key_env else None,
            )
        )
    return portals
