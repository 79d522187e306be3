"""One Settings object, read from ``LOOPML_*`` environment variables when asked (never at import)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # an empty variable means "not set" (sam local leaves parameter refs it cannot resolve empty)
    model_config = SettingsConfigDict(env_prefix="LOOPML_", extra="ignore", frozen=True, env_ignore_empty=True)

    store: str = Field(default=".loopml", description="store root: a folder or s3://bucket/prefix")
    alias: str = Field(default="champion", description="the registry alias the API serves")
    api_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$",
                                       description="hex SHA-256 of the API key; unset = no key")
    max_batch_rows: int = Field(default=1000, ge=1)
    max_feedback_labels: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=6_000_000, ge=1024, description="Lambda's synchronous payload limit")
    model_ttl_seconds: float = Field(default=60.0, ge=0, description="how often the API re-reads the alias")
    log_flush_seconds: float = Field(default=5.0, ge=0)
    log_flush_rows: int = Field(default=500, ge=1)
    log_max_buffer: int = Field(default=100_000, ge=1, description="records held while the store is down; older ones are dropped and counted")
    candidate_alias: str = Field(default="candidate", description="registry alias of a gradual promotion")
    candidate_weight: float = Field(default=0.1, ge=0, le=1, description="share of /predict requests the candidate answers")
    rollout_min_requests: int = Field(default=200, ge=1, description="candidate requests before it is judged")
    rollout_max_error_increase: float = Field(default=0.01, ge=0, description="error-rate margin over the champion")
    rollout_max_latency_ratio: float = Field(default=2.0, gt=1, description="median latency ratio to the champion")
    gateway_api_keys: bool = Field(default=False, description="also accept requests API Gateway authenticated "
                                                               "with a usage-plan key (template option)")
    observability: str = Field(default="off", pattern="^(off|json)$",
                               description="json: structured logs and CloudWatch EMF metrics on stdout")
    sns_topic_arn: str | None = None
    s3_timeout_seconds: float = Field(default=10.0, gt=0, description="connect and read timeout of each S3 request")
    s3_max_attempts: int = Field(default=3, ge=1, description="attempts per S3 call (the first one included)")
    s3_stall_log_seconds: float = Field(default=5.0, gt=0,
                                        description="log what an S3 call is waiting for once it takes this long")
    root_path: str = Field(default="", description="URL prefix in front of the app, e.g. the API Gateway stage")


@lru_cache
def get_settings() -> Settings:
    return Settings()
