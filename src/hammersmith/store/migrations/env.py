"""Alembic environment: migrates over the connection Store hands in, so it runs on Store's own engine.

There is no alembic.ini and no offline (--sql) mode: Store.__init__ is the only caller.
"""

from __future__ import annotations

from alembic import context

from hammersmith.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
