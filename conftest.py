"""Fixtures every app's tests share: the three personas (admin, operator, viewer)."""

import os

import pytest

# Playwright's sync API keeps an event loop running in the test thread; the ORM would refuse.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def admin(db):
    from console.testing import make_persona

    return make_persona("admin", "Administrators", is_staff=True, is_superuser=True)


@pytest.fixture
def operator(db):
    from console.testing import make_persona

    return make_persona("olivia", "Operators")


@pytest.fixture
def viewer(db):
    from console.testing import make_persona

    return make_persona("victor", "Viewers")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture(scope="session", autouse=True)
def credentials_master_key():
    """The run's data directory has a credentials master key, as after a console start."""
    from credentials import crypto

    if not crypto.load_keys():
        crypto.create_key_file()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker in a thread of the test process (in-memory broker). Tests that use
    it need ``@pytest.mark.django_db(transaction=True)`` so the worker sees their rows."""
    from console.testing import InProcessWorker

    with django_db_blocker.unblock():
        worker = InProcessWorker().start()
    yield worker
    worker.stop()
