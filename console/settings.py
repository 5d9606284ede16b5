"""Steward settings: everything comes from the environment, with safe local defaults.

Embedded default (no variables set): SQLite in STEWARD_HOME, the in-memory Celery broker and
channel layer, one process (``manage.py runconsole``). Scaled: DATABASE_URL (PostgreSQL) and
REDIS_URL (Celery broker and channel layer), with web, worker and beat as separate processes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from console.env import env_bool, env_int, env_path, env_str
from console.home import ensure_dir, read_or_create_secret

BASE_DIR = Path(__file__).resolve().parent.parent

STEWARD_HOME = env_path("STEWARD_HOME", BASE_DIR / "steward-home")
STEWARD_SECRETS_DIR = STEWARD_HOME / "secrets"
DEBUG = env_bool("STEWARD_DEBUG", False)
DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
STEWARD_SCALED = bool(REDIS_URL)
STEWARD_URL = env_str("STEWARD_URL", f"http://127.0.0.1:{env_int('STEWARD_PORT', 8080)}/")
STEWARD_VERSION = "0.1.0"

# --- Django's own secret (sessions, CSRF). Never used for credentials: see STEWARD_MASTER_KEY.
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "placeholder", "insecure", "xxx"}


def _load_secret_key() -> str:
    value = env_str("STEWARD_SECRET_KEY").strip()
    key_file = env_str("STEWARD_SECRET_KEY_FILE").strip()
    if not value and key_file:
        try:
            value = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"STEWARD_SECRET_KEY_FILE {key_file}: {exc.strerror}"
            ) from exc
    if not value and not (DATABASE_URL or REDIS_URL):
        # Embedded: like Jenkins, the data directory keeps its own generated secret. Scaled
        # processes may run on several machines, so there it must be given, the same everywhere.
        # The data directory holds the database and sessions: other users may not look in.
        ensure_dir(STEWARD_HOME)
        value = read_or_create_secret(STEWARD_SECRETS_DIR / "secret.key")
    placeholder = (
        value.lower() in PLACEHOLDER_SECRETS
        or value.startswith("django-insecure")
        or len(value) < 32
    )
    if placeholder and not DEBUG:
        raise ImproperlyConfigured(
            "Refusing to start: STEWARD_SECRET_KEY is missing or a placeholder. Set "
            "STEWARD_SECRET_KEY (or STEWARD_SECRET_KEY_FILE) to a long random value, the same "
            "on every web and worker process, or set STEWARD_DEBUG=1 for local development."
        )
    return value or "steward-debug-only-secret-key-not-for-production-use"


SECRET_KEY = _load_secret_key()

# Credentials are encrypted with their own master key (credentials/crypto.py), never SECRET_KEY.
STEWARD_MASTER_KEY = env_str("STEWARD_MASTER_KEY")
STEWARD_MASTER_KEY_FILE = env_path("STEWARD_MASTER_KEY_FILE", STEWARD_SECRETS_DIR / "master.key")
STEWARD_INITIAL_ADMIN_PASSWORD_FILE = STEWARD_SECRETS_DIR / "initialAdminPassword"

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"] + [
    h.strip() for h in env_str("STEWARD_ALLOWED_HOSTS").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in env_str("STEWARD_CSRF_TRUSTED_ORIGINS").split(",") if o.strip()
]
# The console's own public address is always allowed (behind a proxy it is what browsers use).
_public = urlparse(STEWARD_URL)
if _public.hostname and _public.scheme in {"http", "https"}:
    ALLOWED_HOSTS.append(f"[{_public.hostname}]" if ":" in _public.hostname else _public.hostname)
    CSRF_TRUSTED_ORIGINS.append(f"{_public.scheme}://{_public.netloc}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "console",
    "credentials",
    "nodes",
    "builds",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.steward",
            ],
        },
    },
]


def _database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL: unsupported scheme {parsed.scheme!r} (use postgres://)"
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "steward",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env_str("STEWARD_TEST_DATABASE_NAME") or None},
    }


if DATABASE_URL:
    DATABASES = {"default": _database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_path("STEWARD_DB_PATH", STEWARD_HOME / "steward.sqlite3"),
            # Measured (RUNTIME-NOTES): only IMMEDIATE transactions remove "database is locked"
            # under concurrent writers; WAL keeps readers fast.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
                ),
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("STEWARD_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
_static_root = env_str("STEWARD_STATIC_ROOT")
STATIC_ROOT = Path(_static_root) if _static_root else None
# Serve straight from the app folders: `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 5_242_880

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if env_bool("STEWARD_HTTPS", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env_int("STEWARD_HSTS_SECONDS", 31_536_000)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Celery: the database row is the truth; tasks carry ids only.
# Every Redis key of this installation starts with this prefix (broker and channel layer), so
# two installations, or a test run beside a live one, can share one Redis server.
STEWARD_REDIS_PREFIX = env_str("STEWARD_REDIS_PREFIX", "steward")
if STEWARD_SCALED:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        "global_keyprefix": f"{STEWARD_REDIS_PREFIX}:",
    }
else:
    CELERY_BROKER_URL = "memory://localhost/"
    # kombu's memory transport, with short drains so a stop is noticed at once (console/broker.py).
    CELERY_BROKER_TRANSPORT = "console.broker:MemoryTransport"
    # The default 1 s polling gives about 1 s task pickup (RUNTIME-NOTES 2(i)).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.1}
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_CONCURRENCY = env_int("STEWARD_WORKER_THREADS", 8)
# Beat only asks; each task decides from the database whether it is due (the row is the truth).
# nodes.monitors is not a "tasks" module, so autodiscovery would not register its tasks.
CELERY_IMPORTS = ("nodes.monitors",)
CELERY_BEAT_SCHEDULE: dict = {
    # Runs a monitoring sweep once per Configure Monitors interval (nodes/monitors.py).
    "node-monitors": {"task": "nodes.monitor_sweep", "schedule": 5.0, "options": {"expires": 5}},
    "node-retention": {
        "task": "nodes.retention_sweep",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Fails builds whose worker died (frees their executors) and runs the scheduler, so quiet
    # periods end and every queued item shows a current why (builds/tasks.py).
    "builds-sweep": {"task": "builds.sweep", "schedule": 10.0, "options": {"expires": 10}},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(STEWARD_HOME / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Channels: channel layers drop messages over capacity silently, so raise it; everything
# pushed is also stored and replayable by offset.
if STEWARD_SCALED:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "capacity": 10_000,
                "prefix": STEWARD_REDIS_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10_000},
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("STEWARD_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "paramiko": {"level": "WARNING"},
        "celery": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
    },
}
