"""Alembic environment shared by every service; the service comes from the config (see __init__)."""

from alembic import context

from shared.migrations import run_environment

run_environment(context)
