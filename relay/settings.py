"""The relay's settings: one frozen dataclass, read from a TOML file and overridden by CLI flags.

Every knob has its unit in its name and its default beside it. :meth:`Settings.validate` runs all
checks before anything starts, so a bad configuration is refused with every reason at once.

Backends are chosen by URL:

- ``database_url``: ``sqlite:///path/relay.db`` (default: ``<data_dir>/relay.db``), ``memory:``
  (in-memory SQLite run on the loop, for simulations), or ``postgresql://user@host:port/db``
  (optionally ``?schema=name``).
- ``blocks_url``: ``file:///path`` (default: ``<data_dir>/blocks``) or ``s3://bucket/prefix``
  (with ``s3_endpoint_url`` and the usual AWS credentials in the environment).
- ``notify_url``: ``local:`` (in-process, default) or ``redis://host:port/db`` (with
  ``redis_prefix`` for the channel and key names).
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

MAX_TOKEN_TTL_S = 15 * 60


class SettingsError(ValueError):
    """A configuration that cannot work; the message lists every problem found."""


@dataclass(frozen=True)
class JwtKey:
    """One token-signing key; the first in the list signs, all of them verify (rotation)."""

    kid: str
    secret: bytes


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8443
    data_dir: Path = Path("relay-data")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Plain HTTP off loopback is allowed only behind a proxy that terminates TLS (an ingress);
    #: the origin must then be https.
    behind_tls_proxy: bool = False
    #: The origin devices put in their auth messages and the tokens' audience.
    origin: str = ""
    database_url: str = ""
    blocks_url: str = ""
    s3_endpoint_url: str | None = None
    #: Answer block GETs with a redirect to a pre-signed S3 URL instead of the bytes.
    s3_presign: bool = True
    notify_url: str = "local:"
    redis_prefix: str = "driftsync:"
    #: SQLite durability: FULL fsyncs the WAL at every commit (no acknowledged write is lost on
    #: power failure); NORMAL survives a process crash but may lose the last commits on power loss.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    registration: Literal["open", "invite"] = "open"
    jwt_keys: tuple[JwtKey, ...] = ()
    token_ttl_s: int = 600
    auth_nonce_ttl_s: int = 120
    auth_clock_skew_s: int = 300
    max_envelope_bytes: int = 1 << 20
    max_batch_envelopes: int = 1000
    max_block_bytes: int = 5 << 20
    max_request_bytes: int = 16 << 20
    page_size_max: int = 1000
    quota_bytes_default: int = 50 << 30
    writes_per_minute_per_user: int = 6000
    #: Login requests (challenge and token) per client address per minute.
    logins_per_minute_per_client: int = 120
    #: How long a device-linking rendezvous lives, and how many one device may hold open.
    link_ttl_s: int = 300
    link_open_max_per_device: int = 4
    heartbeat_s: float = 20.0
    longpoll_timeout_s: float = 25.0
    longpoll_jitter_s: float = 5.0
    subscriber_shares_max: int = 1000
    shutdown_grace_s: float = 5.0
    log_level: str = "INFO"

    # -- derived -------------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'relay.db').resolve()}"

    @property
    def effective_blocks_url(self) -> str:
        return self.blocks_url or f"file://{(self.data_dir / 'blocks').resolve()}"

    @property
    def effective_origin(self) -> str:
        if self.origin:
            return self.origin
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    # -- checks --------------------------------------------------------------------------------

    def validate(self) -> Settings:
        problems: list[str] = []
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("give both tls_cert and tls_key, or neither")
        if self.behind_tls_proxy and not self.effective_origin.startswith("https://"):
            problems.append("behind_tls_proxy needs an https:// origin (the proxy's public URL)")
        if self.tls_cert is None and not self.is_loopback() and not self.behind_tls_proxy:
            problems.append(
                f"TLS is required when listening on {self.host}: pass --tls-cert and --tls-key "
                "(plain HTTP is allowed on loopback, or behind a TLS proxy with behind_tls_proxy)"
            )
        if not 0 < self.token_ttl_s <= MAX_TOKEN_TTL_S:
            problems.append(f"token_ttl_s must be in 1..{MAX_TOKEN_TTL_S}")
        if self.registration not in ("open", "invite"):
            problems.append("registration must be 'open' or 'invite'")
        if self.sqlite_synchronous not in ("FULL", "NORMAL"):
            problems.append("sqlite_synchronous must be FULL or NORMAL")
        db = self.effective_database_url
        if not db.startswith(("sqlite:///", "memory:", "postgresql://", "postgres://")):
            problems.append(f"database_url must be sqlite:///…, memory: or postgresql://…: {db!r}")
        blocks = self.effective_blocks_url
        if not blocks.startswith(("file://", "s3://")):
            problems.append(f"blocks_url must be file://… or s3://bucket/prefix, got {blocks!r}")
        if not self.notify_url.startswith(("local:", "redis://")):
            problems.append(f"notify_url must be local: or redis://…, got {self.notify_url!r}")
        for key in self.jwt_keys:
            if len(key.secret) < 32:
                problems.append(f"JWT key {key.kid!r} must be at least 32 bytes")
        if len({k.kid for k in self.jwt_keys}) != len(self.jwt_keys):
            problems.append("JWT key ids must be unique")
        for name in (
            "max_envelope_bytes",
            "max_batch_envelopes",
            "max_block_bytes",
            "page_size_max",
            "writes_per_minute_per_user",
            "logins_per_minute_per_client",
            "subscriber_shares_max",
            "link_ttl_s",
            "link_open_max_per_device",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.heartbeat_s <= 0 or self.longpoll_timeout_s <= 0 or self.longpoll_jitter_s < 0:
            problems.append("heartbeat_s and longpoll_timeout_s must be positive, jitter >= 0")
        if problems:
            raise SettingsError("invalid relay settings:\n  - " + "\n  - ".join(problems))
        return self

    # -- sources -------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: Path, base: Settings | None = None) -> Settings:
        """Settings from a TOML file: top-level keys named as the fields, plus ``[[jwt_keys]]``
        tables of ``kid`` and ``secret_file`` (a file holding the key, so the TOML holds no secret).
        """
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read relay config {path}: {exc}") from exc
        return cls.from_mapping(raw, base=base, relative_to=path.parent)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], base: Settings | None = None) -> Settings:
        """Overrides from ``DRIFT_RELAY_<FIELD>`` variables (how a container gets its secrets)."""
        known = {f.name: f for f in fields(cls) if f.name != "jwt_keys"}
        raw: dict[str, Any] = {}
        for name, f in known.items():
            value = environ.get(f"DRIFT_RELAY_{name.upper()}")
            if value is None:
                continue
            kind = str(f.type)
            if kind == "int":
                raw[name] = int(value)
            elif kind == "float":
                raw[name] = float(value)
            elif kind == "bool":
                raw[name] = value.lower() in ("1", "true", "yes")
            else:
                raw[name] = value
        return cls.from_mapping(raw, base=base)

    @classmethod
    def from_mapping(
        cls, raw: dict[str, Any], base: Settings | None = None, relative_to: Path | None = None
    ) -> Settings:
        known = {f.name: f for f in fields(cls)}
        changes: dict[str, Any] = {}
        unknown = [k for k in raw if k not in known]
        if unknown:
            raise SettingsError(f"unknown relay settings: {', '.join(sorted(unknown))}")
        for key, value in raw.items():
            if key == "jwt_keys":
                changes[key] = tuple(_jwt_key(entry, relative_to) for entry in value)
            elif key in ("data_dir", "tls_cert", "tls_key"):
                changes[key] = _path(value, relative_to)
            else:
                changes[key] = value
        return replace(base or cls(), **changes)


def _path(value: Any, relative_to: Path | None) -> Path:
    p = Path(str(value)).expanduser()
    if relative_to is not None and not p.is_absolute():
        p = relative_to / p
    return p


def _jwt_key(entry: Any, relative_to: Path | None) -> JwtKey:
    if not isinstance(entry, dict) or "kid" not in entry or "secret_file" not in entry:
        raise SettingsError("each [[jwt_keys]] needs kid and secret_file")
    path = _path(entry["secret_file"], relative_to)
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"cannot read JWT key {entry['kid']!r} from {path}: {exc}") from exc
    return JwtKey(kid=str(entry["kid"]), secret=secret)
