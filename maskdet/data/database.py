"""The database: its tables, opening an engine on SQLite or PostgreSQL, creating and upgrading the schema, and the write
lock."""

import sqlite3
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from maskdet.core.errors import StoreError
from maskdet.core.settings import DEFAULT_LABELS
from maskdet.core.text import now

SCHEMA_VERSION = 5  # 2: images.landmarks; 3: runs.heartbeat_at; 4: index one_active_run; 5: table manual_faces
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
BACKENDS = ("sqlite", "postgresql")
LOCK_KEY = 0x6D61736B646574  # "maskdet": PostgreSQL advisory lock that serialises schema changes and import batches

metadata = sa.MetaData()
meta_table = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
labels_table = sa.Table(
    "labels", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(32), nullable=False),
)
images_table = sa.Table(
    "images", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("file", sa.String(128), nullable=False),
    sa.Column("label_id", sa.Integer, sa.ForeignKey("labels.id"), nullable=False, index=True),
    sa.Column("source_name", sa.String(512), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("face_x1", sa.Float), sa.Column("face_y1", sa.Float),
    sa.Column("face_x2", sa.Float), sa.Column("face_y2", sa.Float),
    sa.Column("face_probability", sa.Float),
    # JSON [[x, y] * 5] of the stored face; "[]": looked for, none found; NULL: not looked for yet (older data homes)
    sa.Column("landmarks", sa.Text),
    sa.Column("phash", sa.String(64), nullable=False),
    sa.Column("dup_group", sa.Integer, nullable=False, index=True),
    sa.Column("split", sa.String(8)),
    sa.Column("created_at", sa.String(32), nullable=False),
)
# Face boxes set by hand (drawn, or one of MTCNN's faces picked), by the photo's SHA-256: they replace the detected box
# (kept in images) wherever an image is read, and stay when the photo is deleted: importing it again brings them back.
manual_faces_table = sa.Table(
    "manual_faces", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("face_x1", sa.Float, nullable=False), sa.Column("face_y1", sa.Float, nullable=False),
    sa.Column("face_x2", sa.Float, nullable=False), sa.Column("face_y2", sa.Float, nullable=False),
    sa.Column("face_probability", sa.Float, nullable=False),  # a box drawn by hand: 1
    sa.Column("landmarks", sa.Text),  # JSON as in images; NULL: a box drawn by hand has none
    sa.Column("created_at", sa.String(32), nullable=False),
)
manual_face_of_image = manual_faces_table.c.sha256 == images_table.c.sha256
FACE_COLUMNS = ("face_x1", "face_y1", "face_x2", "face_y2", "face_probability", "landmarks")  # in both tables
# One training at a time, kept by the database: all queued or running runs share one index key.
_active = sa.text("status IN ('queued', 'running')")
one_active_run = sa.Index("one_active_run", sa.literal_column("(1)"), unique=True,
                          sqlite_where=_active, postgresql_where=_active)
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("started_at", sa.String(32)),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("progress", sa.Text),
    sa.Column("metrics", sa.Text),
    sa.Column("artefact_dir", sa.String(512)),
    sa.Column("error", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("heartbeat_at", sa.String(32)),  # written every few seconds by the process running it
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    one_active_run,
)


def _upgrade(conn, version: int) -> None:
    """Bring a data home written by an older maskdet to SCHEMA_VERSION (its data stays as it was, except that of
    several queued or running runs, which older versions allowed, only the newest stays so: the others fail). New
    tables (manual_faces) were made by create_all before."""
    for table, column, kind in (("images", "landmarks", "TEXT"), ("runs", "heartbeat_at", "VARCHAR(32)")):
        if column not in {existing["name"] for existing in sa.inspect(conn).get_columns(table)}:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    if version < 4:
        newest_first = list(conn.execute(sa.select(runs_table.c.id).where(runs_table.c.status.in_(ACTIVE_STATUSES))
                                         .order_by(runs_table.c.created_at.desc(), runs_table.c.id.desc())).scalars())
        if len(newest_first) > 1:
            conn.execute(runs_table.update().where(runs_table.c.id.in_(newest_first[1:])).values(
                status="failed", finished_at=now(), error="Failed when maskdet moved to one training at a time: the "
                                                          f"newer run {newest_first[0]} stayed active."))
        one_active_run.create(conn)
    conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def open_database(url: str) -> sa.Engine:
    """An engine for a SQLite or PostgreSQL URL (postgresql:// means psycopg 3, which maskdet installs); a URL that
    cannot be used is a StoreError saying why."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError("MASKDET_DATABASE_URL is not a database URL: use sqlite:///PATH or "
                         "postgresql://USER:PASSWORD@HOST:PORT/DATABASE.") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = sa.create_engine(parsed)
    except (ImportError, sa.exc.NoSuchModuleError) as error:
        raise StoreError(f"No driver for the database {shown_url(url)} ({error}): use a sqlite:/// or a postgresql:// "
                         "URL, or install that driver into maskdet's environment.") from None
    if engine.dialect.name not in BACKENDS:
        raise StoreError(f"maskdet keeps its registry in SQLite or PostgreSQL, not {engine.dialect.name} "
                         f"({shown_url(url)}): use a sqlite:/// or a postgresql:// URL.")
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def shown_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


def dialect_insert(conn, table: sa.Table):
    """The backend's INSERT, which can say what to do ON CONFLICT."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def write_lock(conn) -> None:
    """Hold the database's write lock until this transaction ends, so that transactions which read before they write
    (schema creation, import batches) run one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(connection, _record, attempts: int = 50) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    for attempt in range(attempts):  # a new database refuses the switch at once, not waiting, while another makes it
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.02)
    cursor.close()


def migrate(engine: sa.Engine, url: str) -> None:
    """Create, check or upgrade the schema, one process at a time (several may open a new data home at once)."""
    try:
        engine.connect().close()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        reason = str(error.orig).strip().splitlines()[0]
        raise StoreError(f"Cannot open the database {shown_url(url)} ({reason}): check "
                         "MASKDET_DATABASE_URL and that the database server is running.") from None
    with engine.begin() as conn:
        write_lock(conn)
        metadata.create_all(conn)
        version = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
        if version is None:
            conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            conn.execute(labels_table.insert(), [{"name": n, "created_at": now()} for n in DEFAULT_LABELS])
        elif int(version) > SCHEMA_VERSION:
            raise StoreError(f"The database was written by a newer maskdet (schema {version}); upgrade maskdet.")
        elif int(version) < SCHEMA_VERSION:
            _upgrade(conn, int(version))
