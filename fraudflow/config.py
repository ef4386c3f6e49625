"""Settings: one model, read from the environment and `.env`.

Standard names come first (DATABASE_URL, AWS_REGION, AWS_ENDPOINT_URL_KINESIS); the reference design's
names (POSTGRES_*, KINESIS_STREAM, stream_name, aws_region, SECRETS_MANAGER_ID) are accepted as aliases so
existing `.env` files keep working.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(enum.StrEnum):
    AUTO = "auto"  # console on a TTY, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


class DeliveryMode(enum.StrEnum):
    ACK = "ack"  # answer once Kinesis acknowledged the record
    ASYNC = "async"  # answer at once; publish from a bounded buffer


class SettingsError(Exception):
    """A missing or invalid setting; the message names the environment variable and never a secret."""


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class DbSslMode(enum.StrEnum):
    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


OPEN_PATH_GROUPS = ("readyz", "metrics", "docs")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    env: Environment = Field(Environment.DEVELOPMENT, validation_alias=_env("FRAUDFLOW_ENV"))
    log_level: str = Field("INFO", validation_alias=_env("FRAUDFLOW_LOG_LEVEL"))
    log_format: LogFormat = Field(LogFormat.AUTO, validation_alias=_env("FRAUDFLOW_LOG_FORMAT"))
    data_dir: Path = Field(Path(".fraudflow"), validation_alias=_env("FRAUDFLOW_DATA_DIR"))

    # Models: a directory holding manifest.json; unset means models/ of a checkout or the copy in the wheel.
    models_dir: Path | None = Field(None, validation_alias=_env("FRAUDFLOW_MODELS_DIR"))

    # PostgreSQL: DATABASE_URL, else the reference design's POSTGRES_* parts, else SECRETS_MANAGER_ID.
    database_url: SecretStr | None = Field(None, validation_alias=_env("DATABASE_URL"))
    postgres_host: str | None = Field(None, validation_alias=_env("POSTGRES_HOST"))
    postgres_port: int = Field(5432, ge=1, le=65535, validation_alias=_env("POSTGRES_PORT"))
    postgres_db: str = Field("postgres", validation_alias=_env("POSTGRES_DB"))
    postgres_user: str = Field("postgres", validation_alias=_env("POSTGRES_USER"))
    postgres_password: SecretStr | None = Field(None, validation_alias=_env("POSTGRES_PASSWORD"))
    secrets_manager_id: str | None = Field(None, validation_alias=_env("SECRETS_MANAGER_ID"))
    # RDS IAM database authentication: POSTGRES_USER logs in with a token signed by the task's role (no
    # password anywhere); the consumer and the dashboard use it on AWS, the master secret is for migrations.
    db_iam_auth: bool = Field(False, validation_alias=_env("FRAUDFLOW_DB_IAM_AUTH"))
    # TLS to PostgreSQL, as libpq's sslmode (unset: the URL's, else asyncpg's `prefer`: encrypted when the
    # server offers it, never verified). verify-full checks the certificate against FRAUDFLOW_DB_SSLROOTCERT
    # (default: the Amazon RDS authorities shipped in fraudflow/db/rds-ca-bundle.pem) and the host name.
    db_sslmode: DbSslMode | None = Field(None, validation_alias=_env("FRAUDFLOW_DB_SSLMODE"))
    db_sslrootcert: Path | None = Field(None, validation_alias=_env("FRAUDFLOW_DB_SSLROOTCERT"))
    db_pool_min: int = Field(1, ge=0, validation_alias=_env("FRAUDFLOW_DB_POOL_MIN"))
    db_pool_max: int = Field(10, ge=1, validation_alias=_env("FRAUDFLOW_DB_POOL_MAX"))

    # Kinesis
    aws_region: str = Field("us-east-1", validation_alias=_env("AWS_REGION", "aws_region", "AWS_DEFAULT_REGION"))
    kinesis_endpoint_url: str | None = Field(None, validation_alias=_env("AWS_ENDPOINT_URL_KINESIS"))
    stream_name: str = Field(
        "fraud-predictions-stream",
        min_length=1,
        max_length=128,
        pattern=r"^[a-zA-Z0-9_.-]+$",
        validation_alias=_env("FRAUDFLOW_STREAM", "KINESIS_STREAM", "stream_name"),
    )
    shards: int = Field(4, ge=1, le=500, validation_alias=_env("FRAUDFLOW_SHARDS"))

    # Online feature store (Redis or Valkey): redis://, rediss:// (TLS) or unix://; unset: scored without
    # behaviour features. `fraudflow up` and `fraudflow services` start an embedded redis-server.
    redis_url: SecretStr | None = Field(None, validation_alias=_env("FRAUDFLOW_REDIS_URL"))
    redis_auth_token: SecretStr | None = Field(None, validation_alias=_env("FRAUDFLOW_REDIS_AUTH_TOKEN"))
    features_budget_ms: float = Field(20.0, gt=0, le=10_000, validation_alias=_env("FRAUDFLOW_FEATURES_BUDGET_MS"))

    # Scoring API. Batching is natural by default: no fixed wait; whatever arrives while an inference or a
    # PutRecords call is in flight goes into the next one, so batches grow with load and idle latency stays low.
    api_keys: SecretStr | None = Field(None, validation_alias=_env("FRAUDFLOW_API_KEYS"))  # comma-separated
    # Keys for /admin routes only (model reload); client keys are not accepted there. None: loopback only.
    admin_keys: SecretStr | None = Field(None, validation_alias=_env("FRAUDFLOW_ADMIN_KEYS"))
    delivery_mode: DeliveryMode = Field(DeliveryMode.ACK, validation_alias=_env("FRAUDFLOW_DELIVERY_MODE"))
    publish_timeout_s: float = Field(2.0, gt=0, validation_alias=_env("FRAUDFLOW_PUBLISH_TIMEOUT_S"))
    publish_linger_ms: float = Field(0.0, ge=0, validation_alias=_env("FRAUDFLOW_PUBLISH_LINGER_MS"))
    publish_buffer_records: int = Field(20_000, ge=1, validation_alias=_env("FRAUDFLOW_PUBLISH_BUFFER_RECORDS"))
    # One partition key's share of that buffer: a hot user_id gets 503 beyond it while every other key flows.
    publish_key_buffer_records: int = Field(2_000, ge=1, validation_alias=_env("FRAUDFLOW_PUBLISH_KEY_BUFFER_RECORDS"))
    publish_max_in_flight: int = Field(2, ge=1, le=64, validation_alias=_env("FRAUDFLOW_PUBLISH_MAX_IN_FLIGHT"))
    # How often each API process publishes its heartbeat (published and 503 counts per minute) on the stream.
    heartbeat_s: float = Field(5.0, gt=0, le=60, validation_alias=_env("FRAUDFLOW_HEARTBEAT_S"))
    score_batch_rows: int = Field(64, ge=1, le=4096, validation_alias=_env("FRAUDFLOW_SCORE_BATCH_ROWS"))
    score_batch_wait_ms: float = Field(0.0, ge=0, validation_alias=_env("FRAUDFLOW_SCORE_BATCH_WAIT_MS"))
    scoring_threads: int = Field(1, ge=1, le=64, validation_alias=_env("FRAUDFLOW_SCORING_THREADS"))
    predict_batch_max: int = Field(500, ge=1, le=10_000, validation_alias=_env("FRAUDFLOW_PREDICT_BATCH_MAX"))
    # Operator paths answering without a key (comma-separated, of OPEN_PATH_GROUPS); the others take a client or
    # admin key. /healthz is always open.
    api_open_paths: str = Field("readyz,metrics,docs", validation_alias=_env("FRAUDFLOW_API_OPEN_PATHS"))
    # Served with api.protocol:BoundedHttpTools: a connection must deliver a whole request within this time of
    # connecting, of its previous answer or of starting the request (slow and idle clients are closed).
    http_request_timeout_s: float = Field(15.0, gt=0, validation_alias=_env("FRAUDFLOW_HTTP_REQUEST_TIMEOUT_S"))
    max_body_bytes: int = Field(64 * 1024, ge=1024, validation_alias=_env("FRAUDFLOW_MAX_BODY_BYTES"))
    max_batch_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, validation_alias=_env("FRAUDFLOW_MAX_BATCH_BODY_BYTES"))

    # Dashboard: user:password pairs for HTTP basic auth, comma-separated, or a JSON object {"user": "password"}
    # (for passwords with commas); without them it serves loopback only.
    dashboard_users: SecretStr | None = Field(None, validation_alias=_env("FRAUDFLOW_DASHBOARD_USERS"))
    dashboard_refresh_s: float = Field(5.0, ge=1.0, validation_alias=_env("FRAUDFLOW_DASHBOARD_REFRESH_S"))

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("api_open_paths")
    @classmethod
    def _known_paths(cls, value: str) -> str:
        unknown = {g.strip() for g in value.split(",") if g.strip()} - set(OPEN_PATH_GROUPS)
        if unknown:
            raise ValueError(f"unknown {', '.join(sorted(unknown))}: choose among {', '.join(OPEN_PATH_GROUPS)}")
        return value

    @field_validator("dashboard_users")
    @classmethod
    def _users_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_users(value.get_secret_value())
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @property
    def production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def dashboard_credentials(self) -> dict[str, str]:
        return {} if self.dashboard_users is None else parse_users(self.dashboard_users.get_secret_value())

    @property
    def open_path_groups(self) -> frozenset[str]:
        return frozenset(g.strip() for g in self.api_open_paths.split(",") if g.strip())

    @property
    def api_key_list(self) -> list[str]:
        return _key_list(self.api_keys)

    @property
    def admin_key_list(self) -> list[str]:
        return _key_list(self.admin_keys)

    @property  # not cached: a copy with another DATABASE_URL (model_copy) must not keep this one's
    def static_database_url(self) -> str | None:
        """The database URL known without network calls: DATABASE_URL, or one built from POSTGRES_*.

        POSTGRES_HOST without a password but with SECRETS_MANAGER_ID is not enough: the password is in the secret.
        """
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.postgres_host and not self.db_iam_auth and (self.postgres_password or not self.secrets_manager_id):
            password = self.postgres_password.get_secret_value() if self.postgres_password else None
            return postgres_url(self.postgres_host, self.postgres_port, self.postgres_db, self.postgres_user, password)
        return None


def parse_users(text: str) -> dict[str, str]:
    """`user:password,...` or a JSON object; an entry that is not a whole pair is an error, never skipped (a
    password cut at a comma would otherwise leave a shorter password silently in force). Messages never
    quote a password."""
    if text.lstrip().startswith("{"):
        try:
            users = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"is not valid JSON (line {error.lineno}, column {error.colno})") from None
        if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in users.items()):
            raise ValueError("the JSON object must map user names to non-empty password strings")
        pairs = list(users.items())
    else:
        pairs = [item.strip().partition(":")[::2] for item in text.split(",") if item.strip()]
        if not all(user and password for user, password in pairs):
            raise ValueError(
                "every comma-separated entry must be user:password; for a password with a comma use the JSON "
                'form {"user": "password"}'
            )
    if any(":" in user for user, _ in pairs):
        raise ValueError("a user name cannot contain ':' (HTTP basic auth splits there)")
    return dict(pairs)


def _key_list(keys: SecretStr | None) -> list[str]:
    if keys is None:
        return []
    return [key.strip() for key in keys.get_secret_value().split(",") if key.strip()]


def postgres_url(host: str, port: int, dbname: str, user: str, password: str | None) -> str:
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    return f"postgresql://{auth}@{host}:{port}/{quote(dbname, safe='')}"


def _variable_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    return field.upper()


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad variable, naming it; input values are left out because they may be secrets."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        lines.append(f"invalid setting {_variable_name(field)}: {item['msg']}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning validation errors into a SettingsError that names the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
