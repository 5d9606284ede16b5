"""Settings from the environment, as an administrator meets them: ``manage.py`` in a fresh
process, with the variables they set. Secrets are compared by digest, never shown."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

GOOD_SECRET = "a-long-random-secret-key-for-the-settings-tests-0123456789"
POSTGRES = "postgres://steward@127.0.0.1:5432/steward"
REDIS = "redis://127.0.0.1:6379/0"


def manage(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``manage.py`` with a clean Steward environment plus ``env``."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STEWARD_")
        and k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    clean.update(DJANGO_SETTINGS_MODULE="console.settings", STEWARD_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess) -> bool:
    return result.returncode != 0 and "Refusing to start" in result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": POSTGRES},
        {"REDIS_URL": REDIS},
        {"DATABASE_URL": POSTGRES, "REDIS_URL": REDIS, "STEWARD_SECRET_KEY": ""},
    ],
    ids=["postgres", "redis", "scaled-empty"],
)
def test_scaled_without_a_secret_key_refuses_to_start(tmp_path, env):
    result = manage(tmp_path, "check", STEWARD_DEBUG="0", **env)
    assert refused(result), result.stderr[-2000:]
    # Nothing generated on the side: the key must be the same on every machine.
    assert not (tmp_path / "secrets" / "secret.key").exists()


@pytest.mark.parametrize(
    "value",
    ["changeme", "CHANGEME", "secret", "django-insecure-" + "x" * 50, "short-key"],
    ids=["changeme", "upper", "secret", "django-insecure", "too-short"],
)
def test_placeholder_secret_keys_are_refused(tmp_path, value):
    result = manage(
        tmp_path, "check", STEWARD_DEBUG="0", DATABASE_URL=POSTGRES, STEWARD_SECRET_KEY=value
    )
    assert refused(result), result.stderr[-2000:]


def test_a_refused_key_is_not_echoed(tmp_path):
    value = "Zq7uNiQue-but-short"
    result = manage(tmp_path, "check", STEWARD_DEBUG="0", DATABASE_URL=POSTGRES, STEWARD_SECRET_KEY=value)  # fmt: skip
    assert refused(result)
    assert value not in result.stderr + result.stdout


def test_placeholder_refused_in_the_embedded_default_too(tmp_path):
    result = manage(tmp_path, "check", STEWARD_DEBUG="0", STEWARD_SECRET_KEY="changeme")
    assert refused(result), result.stderr[-2000:]


def test_a_good_secret_key_is_accepted(tmp_path):
    result = manage(tmp_path, "check", STEWARD_DEBUG="0", DATABASE_URL=POSTGRES, REDIS_URL=REDIS, STEWARD_SECRET_KEY=GOOD_SECRET)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no issues" in result.stdout


def test_secret_key_from_a_file(tmp_path):
    key_file = tmp_path / "django-secret"
    key_file.write_text(GOOD_SECRET + "\n")
    ok = manage(tmp_path, "check", STEWARD_DEBUG="0", DATABASE_URL=POSTGRES, STEWARD_SECRET_KEY_FILE=str(key_file))  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]

    missing = manage(tmp_path, "check", STEWARD_DEBUG="0", DATABASE_URL=POSTGRES, STEWARD_SECRET_KEY_FILE=str(tmp_path / "nope"))  # fmt: skip
    assert missing.returncode != 0
    assert "STEWARD_SECRET_KEY_FILE" in missing.stderr


@pytest.mark.parametrize("value", ["", "changeme"], ids=["missing", "placeholder"])
def test_debug_mode_allows_a_missing_or_placeholder_key(tmp_path, value):
    result = manage(tmp_path, "check", STEWARD_DEBUG="1", DATABASE_URL=POSTGRES, STEWARD_SECRET_KEY=value)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def test_embedded_default_generates_its_secret_key_once_with_mode_0600(tmp_path):
    home = tmp_path / "steward-home"
    first = manage(home, "check", STEWARD_DEBUG="0")
    assert first.returncode == 0, first.stderr[-2000:]
    key = home / "secrets" / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    # The data directory (database, sessions) is private too.
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert len(key.read_text().strip()) >= 32
    before = digest(key)

    second = manage(home, "check", STEWARD_DEBUG="0")
    assert second.returncode == 0, second.stderr[-2000:]
    assert digest(key) == before, "the secret key changed between two starts"
    # Nothing secret on the terminal.
    assert key.read_text().strip() not in first.stdout + first.stderr + second.stdout


def test_deploy_check_with_production_settings(tmp_path):
    """`manage.py check --deploy` behind HTTPS: nothing to fix. Only the two HSTS choices a
    site owner makes (include subdomains, preload list) remain, by design."""
    result = manage(
        tmp_path, "check", "--deploy",
        STEWARD_DEBUG="0", STEWARD_HTTPS="1", STEWARD_SECRET_KEY=GOOD_SECRET,
        DATABASE_URL=POSTGRES, REDIS_URL=REDIS,
        STEWARD_ALLOWED_HOSTS="steward.example.com",
        STEWARD_CSRF_TRUSTED_ORIGINS="https://steward.example.com",
        STEWARD_URL="https://steward.example.com/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    found = set(re.findall(r"\((\w+\.[EW]\d+)\)", result.stdout + result.stderr))
    assert found <= {"security.W005", "security.W021"}, result.stdout + result.stderr


def test_deploy_check_without_https_names_what_to_fix(tmp_path):
    """Without STEWARD_HTTPS the deploy check does warn (cookies not secure, no HSTS): the
    HTTPS switch is what turns those settings on."""
    result = manage(
        tmp_path, "check", "--deploy", STEWARD_DEBUG="0", STEWARD_SECRET_KEY=GOOD_SECRET
    )
    found = set(re.findall(r"\((\w+\.[EW]\d+)\)", result.stdout + result.stderr))
    assert {"security.W012", "security.W016"} <= found


def test_embedded_default_is_sqlite_wal_with_immediate_transactions(tmp_path):
    code = (
        "from django.conf import settings as s; from django.db import connection as c\n"
        "db = s.DATABASES['default']\n"
        "print(db['OPTIONS']['transaction_mode'])\n"
        "with c.cursor() as cur:\n"
        "    cur.execute('PRAGMA journal_mode'); print(cur.fetchone()[0])\n"
        "print(s.CELERY_BROKER_URL.split(':')[0], s.CHANNEL_LAYERS['default']['BACKEND'])\n"
        "print(s.CHANNEL_LAYERS['default']['CONFIG']['capacity'] >= 1000)\n"
        "print(getattr(s, 'CELERY_TASK_ALWAYS_EAGER', False))\n"
    )
    result = manage(tmp_path, "shell", "-v", "0", "-c", code, STEWARD_DEBUG="0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "IMMEDIATE", "wal", "memory", "channels.layers.InMemoryChannelLayer", "True", "False",
    ]  # fmt: skip
    assert (tmp_path / "steward.sqlite3").exists()


def test_scaled_settings_use_redis_for_broker_and_channel_layer(tmp_path):
    code = (
        "from django.conf import settings as s\n"
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'])\n"
        "print(s.CELERY_BROKER_URL == s.REDIS_URL, s.CHANNEL_LAYERS['default']['BACKEND'])\n"
    )
    result = manage(tmp_path, "shell", "-v", "0", "-c", code, STEWARD_DEBUG="0", DATABASE_URL=POSTGRES, REDIS_URL=REDIS, STEWARD_SECRET_KEY=GOOD_SECRET)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "django.db.backends.postgresql", "steward", "True", "channels_redis.core.RedisChannelLayer",
    ]  # fmt: skip


def test_public_url_is_an_allowed_host_and_a_trusted_origin(tmp_path):
    code = (
        "from django.conf import settings as s\n"
        "print('ci.example.com' in s.ALLOWED_HOSTS, 'other.example.com' in s.ALLOWED_HOSTS)\n"
        "print('https://ci.example.com' in s.CSRF_TRUSTED_ORIGINS)\n"
    )
    result = manage(tmp_path, "shell", "-v", "0", "-c", code, STEWARD_DEBUG="0", STEWARD_URL="https://ci.example.com/steward/")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "False", "True"]
