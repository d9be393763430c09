"""USAGE_* environment variables, read once into one typed settings object."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from usage_pipeline.data_dir import DataDir
from usage_pipeline.insights.language import DEFAULT_LANGUAGE, LanguageError, check_language

LEAD_SOURCES = ("github", "hal", "portal")  # usage_pipeline/leads/


class SettingsError(ValueError):
    """A USAGE_* variable holds a value the pipeline cannot use."""


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _positive_number(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _bounded_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def absolute(path: str | Path) -> Path:
    """``path`` as an absolute path (``~`` expanded, relative to the current working directory)."""
    return Path(path).expanduser().resolve()


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} must be 1 or 0 (true/false, yes/no, on/off)")


def _time_zone(value: str) -> str:
    """An IANA time zone name known to Python and to DuckDB (both read the IANA database)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"USAGE_TIMEZONE={value!r} is not a time zone name such as Europe/Paris or UTC") from None
    return value


def _language(value: str) -> str:
    """A language the digest and alerts can be written in (USAGE_LANGUAGE)."""
    try:
        return check_language(value)
    except LanguageError as error:
        raise SettingsError(str(error)) from None


def _lead_sources(value: str | None, github_token: bool) -> tuple[str, ...]:
    """USAGE_LEAD_SOURCES: comma-separated names; unset, every source configured (github needs its token)."""
    if value is None:
        return tuple(name for name in LEAD_SOURCES if name != "github" or github_token)
    names = _split_list(value)
    unknown = [name for name in names if name not in LEAD_SOURCES]
    if unknown:
        raise SettingsError(f"USAGE_LEAD_SOURCES names {unknown}: use some of {', '.join(LEAD_SOURCES)} (or nothing)")
    if "github" in names and not github_token:
        raise SettingsError("USAGE_LEAD_SOURCES names github but USAGE_GITHUB_TOKEN is not set (code search needs it)")
    return names


def _postgres_url(value: str) -> str | None:
    """USAGE_PUBLISH_POSTGRES_URL: ``postgresql://user:password@host:port/db`` (empty: no PostgreSQL copy)."""
    if value and not value.startswith(("postgresql://", "postgres://")):
        raise SettingsError("USAGE_PUBLISH_POSTGRES_URL must look like postgresql://user:password@host:5432/db")
    return value or None


@dataclass(frozen=True)
class Settings:
    """Where the portal is, what to follow, and where the warehouse lives."""

    portal_url: str = "https://www.data.gouv.fr"
    metrics_api_url: str = "https://metric-api.data.gouv.fr"
    organizations: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    data_dir: Path = Path("data")
    start_date: dt.date = field(default_factory=lambda: dt.date.today() - dt.timedelta(days=28))
    http_concurrency: int = 5
    http_timeout: float = 30.0
    http_max_elapsed: float = 300.0
    discussion_count_tolerance: int = 2
    freshness_hour: int = 12
    alert_webhook_url: str | None = None
    answer_sla_days: int = 7
    link_checks: bool = True
    warehouse_lock_wait: float = 600.0
    timezone: str = "Europe/Paris"
    language: str = DEFAULT_LANGUAGE
    smtp_url: str | None = field(default=None, repr=False)  # may hold a password
    smtp_from: str | None = None
    lead_sources: tuple[str, ...] = ()  # reuse lead sources that run (USAGE_LEAD_SOURCES)
    github_token: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    hal_api_url: str = "https://api.archives-ouvertes.fr"
    publish_postgres_url: str | None = field(default=None, repr=False)  # may hold a password

    def __post_init__(self) -> None:
        # Resolved once, here: Dagster, Great Expectations and the demo may run from another working directory.
        object.__setattr__(self, "data_dir", absolute(self.data_dir))

    @property
    def paths(self) -> DataDir:
        """Every file under ``data_dir``, as the resource the assets use."""
        return DataDir(path=str(self.data_dir))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read the USAGE_* variables (see README, "Configuration")."""
        env = os.environ if environ is None else environ
        defaults = cls()
        start_raw = env.get("USAGE_START_DATE", "").strip()
        try:
            start_date = dt.date.fromisoformat(start_raw) if start_raw else defaults.start_date
        except ValueError:
            raise SettingsError(f"USAGE_START_DATE={start_raw!r} is not a date (YYYY-MM-DD)") from None
        return cls(
            portal_url=env.get("USAGE_PORTAL_URL", defaults.portal_url).rstrip("/"),
            metrics_api_url=env.get("USAGE_METRICS_API_URL", defaults.metrics_api_url).rstrip("/"),
            organizations=_split_list(env.get("USAGE_ORGANIZATIONS", "")),
            datasets=_split_list(env.get("USAGE_DATASETS", "")),
            data_dir=Path(env.get("USAGE_DATA_DIR", str(defaults.data_dir))),
            start_date=start_date,
            http_concurrency=int(
                _positive_number("USAGE_HTTP_CONCURRENCY", env.get("USAGE_HTTP_CONCURRENCY", "5"), int)
            ),
            http_timeout=float(_positive_number("USAGE_HTTP_TIMEOUT", env.get("USAGE_HTTP_TIMEOUT", "30"), float)),
            http_max_elapsed=float(
                _positive_number("USAGE_HTTP_MAX_ELAPSED", env.get("USAGE_HTTP_MAX_ELAPSED", "300"), float)
            ),
            discussion_count_tolerance=_bounded_int(
                "USAGE_DISCUSSION_COUNT_TOLERANCE", env.get("USAGE_DISCUSSION_COUNT_TOLERANCE", "2"), 0, 10**6
            ),
            freshness_hour=_bounded_int("USAGE_FRESHNESS_HOUR", env.get("USAGE_FRESHNESS_HOUR", "12"), 0, 23),
            alert_webhook_url=env.get("USAGE_ALERT_WEBHOOK_URL", "").strip() or None,
            answer_sla_days=_bounded_int("USAGE_ANSWER_SLA_DAYS", env.get("USAGE_ANSWER_SLA_DAYS", "7"), 1, 3650),
            link_checks=_flag("USAGE_LINK_CHECKS", env.get("USAGE_LINK_CHECKS", "1")),
            warehouse_lock_wait=float(
                _positive_number("USAGE_WAREHOUSE_LOCK_WAIT", env.get("USAGE_WAREHOUSE_LOCK_WAIT", "600"), float)
            ),
            timezone=_time_zone(env.get("USAGE_TIMEZONE", "").strip() or defaults.timezone),
            language=_language(env.get("USAGE_LANGUAGE", "").strip().lower() or defaults.language),
            smtp_url=env.get("USAGE_SMTP_URL", "").strip() or None,
            smtp_from=env.get("USAGE_SMTP_FROM", "").strip() or None,
            lead_sources=_lead_sources(env.get("USAGE_LEAD_SOURCES"), bool(env.get("USAGE_GITHUB_TOKEN", "").strip())),
            github_token=env.get("USAGE_GITHUB_TOKEN", "").strip() or None,
            github_api_url=env.get("USAGE_GITHUB_API_URL", "").strip().rstrip("/") or defaults.github_api_url,
            hal_api_url=env.get("USAGE_HAL_API_URL", "").strip().rstrip("/") or defaults.hal_api_url,
            publish_postgres_url=_postgres_url(env.get("USAGE_PUBLISH_POSTGRES_URL", "").strip()),
        )
