"""Where the cache is and how to reach it: the URL, fsspec storage options, credentials.

Sources, later ones winning:

1. the config file: `$GRAPHRUN_CONFIG`, else `<user config dir>/talkgraph/config.toml`::

       [cache]
       url = "s3://my-bucket/talkgraph-cache"     # the default cache location

       [cache.storage_options]                    # fsspec options of the cache's filesystem
       endpoint_url = "http://127.0.0.1:9000"
       key = "..."                                # credentials: kept on this machine
       secret = "..."

2. `$GRAPHRUN_CACHE` (the URL);
3. the command line: `--cache URL`, `--cache-option KEY=VALUE` (repeatable; a dotted key
   nests, e.g. `client_kwargs.region_name=eu-west-1`; the value is read as YAML).

Credentials never travel: a CacheStore pickled into a dask task carries its URL and the
options that are not secret (`public_options`); on the worker it is rebuilt with those and
the worker's own config file and environment (AWS_* variables, ~/.aws, instance roles), so
each worker must be given its own credentials (docs/deploy.md).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CONFIG_ENV = "GRAPHRUN_CONFIG"
_SECRET = re.compile(r"key|secret|token|passw|credential|auth|session", re.IGNORECASE)
_NOT_SECRET = frozenset({"endpoint_url", "region_name", "profile", "anon", "use_ssl", "requester_pays", "project"})


class ConfigError(ValueError):
    """The config file or a --cache-option cannot be read; the message says where."""


def config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir()) / "talkgraph" / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's content ({} if there is none)."""
    import tomllib

    path = path or config_path()
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        if os.environ.get(CONFIG_ENV):
            raise ConfigError(f"the config file {path} (${CONFIG_ENV}) does not exist") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """["endpoint_url=http://h:9000", "client_kwargs.region_name=x"] -> nested dict."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--cache-option {item!r}: use KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:9000")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) or value is None:
            value = raw  # a plain string where YAML would read a structure or null
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--cache-option {item!r}: {part!r} is set to a value already")
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts merged, `extra` winning."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def cache_settings(url: str | None = None, options: Iterable[str] = (), config: Mapping[str, Any] | None = None,
                   ) -> tuple[str, dict[str, Any]]:
    """(URL, storage options) from the config file, the environment and the command line."""
    from .cache import default_cache_url

    section = (load_config() if config is None else config).get("cache", {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[cache] in {config_path()} must be a table")
    chosen = url or os.environ.get("GRAPHRUN_CACHE") or section.get("url") or default_cache_url()
    stored = section.get("storage_options", {})
    if not isinstance(stored, Mapping):
        raise ConfigError(f"[cache.storage_options] in {config_path()} must be a table")
    return str(chosen), merge(stored, parse_options(options))


def is_secret(name: str) -> bool:
    return name not in _NOT_SECRET and bool(_SECRET.search(name))


def public_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options without credentials (at any depth): what may be pickled into a task."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if is_secret(str(k)):
            continue
        out[k] = public_options(v) if isinstance(v, Mapping) else v
    return out


def worker_options(sent: Mapping[str, Any]) -> dict[str, Any]:
    """On a worker: the client's public options, completed (and overridden) by the worker's
    own config file."""
    try:
        mine = load_config().get("cache", {}).get("storage_options", {})
    except ConfigError:
        mine = {}
    return merge(sent, mine if isinstance(mine, Mapping) else {})
