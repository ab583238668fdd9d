"""Settings, read from ORDERCAST_* environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ordercast.auth import DEVELOPMENT_SECRET
from ordercast.lifecycle import Timeouts


class Settings(BaseSettings):
    """Everything a server process needs to know, with embedded defaults."""

    model_config = SettingsConfigDict(env_prefix="ORDERCAST_")

    database_url: str = "sqlite:///./ordercast.db"
    """Where the store lives. `sqlite:///path` selects the embedded store,
    `postgresql://user:password@host:port/database` the cluster's."""
    database_pool_size: int = Field(10, gt=0)
    """PostgreSQL: connections each node keeps open."""
    database_max_overflow: int = Field(10, ge=0)
    """PostgreSQL: connections a node may open beyond the pool under load."""
    database_pool_timeout_s: float = Field(10.0, gt=0)
    """PostgreSQL: how long a request waits for a free connection (then 503)."""
    sqlite_synchronous: str = "FULL"
    """SQLite `synchronous` pragma: FULL survives power loss, NORMAL a crash."""
    bus_url: str = "memory://"
    """Where events are announced. `memory://` is the in-process bus,
    `redis://host:port/db` the cluster's."""
    bus_prefix: str = "ordercast:"
    """Redis: put before every channel and key (clusters sharing one Redis)."""
    bus_pool_size: int = Field(8, gt=0)
    """Redis: connections each node keeps for publishing (one more listens)."""
    catch_up_interval_s: float = Field(2.0, gt=0)
    """Cluster: how often each node compares its subscriptions with the store."""
    deadline_lease_s: float = Field(10.0, gt=0)
    """How long a node holds a due deadline to fire it before another may."""
    drain_timeout_s: float = Field(10.0, ge=0)
    """On SIGTERM: how long in-flight requests may take before the node stops."""
    token_secret: str = Field(DEVELOPMENT_SECRET, min_length=32)
    """HS256 key of the signed tokens; RFC 7518 asks for at least 32 bytes."""
    restaurant_timeout_s: float = Field(300.0, gt=0)
    """A restaurant that has not answered by then rejects the order (DESIGN.md)."""
    dispatch_timeout_s: float = Field(600.0, gt=0)
    """An accepted order with no courier by then raises `dispatch.overdue`."""
    location_interval_s: float = Field(1.0, ge=0)
    """Followers get at most one `courier.location` frame per order this often."""
    max_outbox_frames: int = Field(2048, gt=0)
    """Frames queued for one slow connection before it is told to resume."""
    webhook_max_attempts: int = Field(8, ge=1)
    """Attempts of a webhook delivery before it goes to the dead-letter list."""
    webhook_retry_base_s: float = Field(1.0, gt=0)
    """Backoff after the first failed attempt, doubled after each (with jitter)."""
    webhook_retry_max_s: float = Field(600.0, gt=0)
    """Longest backoff between two attempts."""
    webhook_timeout_s: float = Field(10.0, gt=0)
    """How long one attempt may take, unless its target says otherwise."""
    webhook_concurrency: int = Field(8, ge=1)
    """Requests in flight to one target (to distinct orders) at once."""
    webhook_lease_margin_s: float = Field(30.0, gt=0)
    """A delivery in flight stays leased for its timeout plus this; after a
    crash it is sent again once the lease ends."""
    webhook_poll_s: float = Field(1.0, gt=0)
    """How often to look for rule changes and deliveries made by other
    processes sharing the database."""
    webhook_log_size: int = Field(1000, ge=1)
    """Attempts kept per target in the delivery log."""
    webhook_delivery: Literal["inline", "external"] = "inline"
    """`inline`: the server sends webhooks itself. `external`: it only records
    them; `ordercast webhooks deliver` processes send them."""
    opentelemetry: bool = False
    """Let FastAPI report spans and metrics to the configured OpenTelemetry
    providers. Off by default: checking for providers costs every request."""

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(self.restaurant_timeout_s, self.dispatch_timeout_s)

    @property
    def is_cluster(self) -> bool:
        """Whether the bus is shared with other nodes (not in-process)."""
        return self.bus_url != "memory://"

    @property
    def uses_development_secret(self) -> bool:
        return self.token_secret == DEVELOPMENT_SECRET

    @property
    def sqlite_path(self) -> str:
        """The file of a `sqlite:///…` database URL."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            raise ValueError(f"not a SQLite URL: {self.database_url}")
        return self.database_url[len(prefix) :]
