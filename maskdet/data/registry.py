"""The run registry's rows (a run's lifecycle is in maskdet.runs) and the data home's key/value settings."""

import json
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa

from maskdet.core.errors import StoreError
from maskdet.core.text import now
from maskdet.data.database import RUN_STATUSES, dialect_insert, meta_table, runs_table

ACTIVE_SETTING = "active_run"  # the meta key naming the active model's run (see maskdet.runs.active)


def _run_dict(row) -> dict:
    run = dict(row)
    for key in ("config", "progress", "metrics"):
        run[key] = json.loads(run[key]) if run[key] else None
    return run


class RunRegistry:
    """Training runs as rows: created, updated, read, deleted; and key/value settings."""

    def create_run(self, config: dict) -> str:
        """A queued run, refused while another run is queued or running: the index one_active_run keeps one training
        at a time, so two sessions pressing Start together cannot both get one."""
        run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        values = dict(id=run_id, created_at=now(), status="queued", config=json.dumps(config), cancel_requested=False)
        try:
            with self.engine.begin() as conn:
                conn.execute(runs_table.insert().values(**values))
        except sa.exc.IntegrityError:
            raise StoreError("Another training run was started a moment ago: wait for it or cancel it first.") from None
        return run_id

    def update_run(self, run_id: str, while_status: str | None = None, **fields) -> bool:
        """Write the run's fields; with while_status, only while the run has that status, in one statement (of two
        processes doing so, one wins). Whether the run was written."""
        for key in ("config", "progress", "metrics"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        if fields.get("status") not in (None, *RUN_STATUSES):
            raise StoreError(f"Unknown run status {fields['status']!r}.")
        query = runs_table.update().where(runs_table.c.id == run_id).values(**fields)
        if while_status is not None:
            query = query.where(runs_table.c.status == while_status)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1

    def run(self, run_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.id == run_id)).mappings().first()
        if row is None:
            raise StoreError(f"No run with id '{run_id}'. See `python -m maskdet runs`.")
        return _run_dict(row)

    def runs(self) -> list[dict]:
        """Every run, newest first."""
        query = sa.select(runs_table).order_by(runs_table.c.created_at.desc(), runs_table.c.id.desc())
        with self.engine.connect() as conn:
            return [_run_dict(row) for row in conn.execute(query).mappings().all()]

    def delete_run(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs_table.delete().where(runs_table.c.id == run_id))
            conn.execute(meta_table.delete().where(meta_table.c.key == ACTIVE_SETTING, meta_table.c.value == run_id))

    def get_setting(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()

    def set_setting(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(dialect_insert(conn, meta_table).values(key=key, value=value)
                         .on_conflict_do_update(index_elements=["key"], set_={"value": value}))
