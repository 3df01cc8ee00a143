import uuid

import pytest
from django.db import connection


@pytest.fixture
def database(db):
    """Connection parameters of the test database, and a URL naming the server's connections."""
    database = connection.settings_dict  # the test database's, once set up
    application_name = f"burst-{uuid.uuid4().hex[:12]}"
    user = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
    url = f"postgres://{user}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    params = {
        "host": database["HOST"],
        "port": database["PORT"],
        "user": database["USER"],
        "password": database["PASSWORD"] or None,
        "dbname": database["NAME"],
    }
    return {"url": f"{url}?application_name={application_name}", "params": params, "name": application_name}
