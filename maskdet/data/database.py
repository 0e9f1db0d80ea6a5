"""The database: its tables, opening an engine on SQLite or PostgreSQL, creating and upgrading the schema, the write
lock, and the integrity check."""

import sqlite3
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from maskdet.core.errors import StoreError
from maskdet.core.settings import DEFAULT_LABELS
from maskdet.core.text import now

SCHEMA_VERSION = 6  # 2: images.landmarks; 3: runs.heartbeat_at; 4: index one_active_run; 5: table manual_faces;
# 6: photos and faces (several a photo) in place of images and manual_faces
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
photos_table = sa.Table(
    "photos", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("file", sa.String(128), nullable=False),
    sa.Column("source_name", sa.String(512), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("phash", sa.String(64), nullable=False),
    sa.Column("dup_group", sa.Integer, nullable=False, index=True),
    sa.Column("split", sa.String(8)),  # every face of a photo is on its side
    sa.Column("created_at", sa.String(32), nullable=False),
)
# Where a face's own box came from: MTCNN at import, a set's annotation, or set by hand.
FACE_SOURCES = ("detected", "annotation", "manual")
# The labelled faces of the photos: a photo holds one or more. A box of NULLs is the whole photo (imported under a
# class, and MTCNN found no face in it).
faces_table = sa.Table(
    "faces", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("label_id", sa.Integer, sa.ForeignKey("labels.id"), nullable=False, index=True),
    sa.Column("face_x1", sa.Float), sa.Column("face_y1", sa.Float),
    sa.Column("face_x2", sa.Float), sa.Column("face_y2", sa.Float),
    sa.Column("face_probability", sa.Float),
    # JSON [[x, y] * 5] of the face; "[]": looked for, none found; NULL: not looked for yet (older data homes)
    sa.Column("landmarks", sa.Text),
    sa.Column("source", sa.String(16), nullable=False),  # one of FACE_SOURCES
    sa.Column("created_at", sa.String(32), nullable=False),
)
# Face boxes set by hand (drawn, or one of MTCNN's faces picked): they replace the face's own box wherever a face is
# read, until reset.
manual_boxes_table = sa.Table(
    "manual_boxes", metadata,
    sa.Column("face_id", sa.Integer, sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("face_x1", sa.Float, nullable=False), sa.Column("face_y1", sa.Float, nullable=False),
    sa.Column("face_x2", sa.Float, nullable=False), sa.Column("face_y2", sa.Float, nullable=False),
    sa.Column("face_probability", sa.Float, nullable=False),  # a box drawn by hand: 1
    sa.Column("landmarks", sa.Text),  # JSON as in faces; NULL: a box drawn by hand has none
    sa.Column("created_at", sa.String(32), nullable=False),
)
manual_box_of_face = manual_boxes_table.c.face_id == faces_table.c.id
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


# Schema 5's tables, read once to upgrade a data home or restore a backup written before schema 6.
legacy_metadata = sa.MetaData()
legacy_images_table = sa.Table(
    "images", legacy_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64)), sa.Column("file", sa.String(128)), sa.Column("label_id", sa.Integer),
    sa.Column("source_name", sa.String(512)), sa.Column("width", sa.Integer), sa.Column("height", sa.Integer),
    *(sa.Column(name, sa.Float) for name in FACE_COLUMNS[:5]), sa.Column("landmarks", sa.Text),
    sa.Column("phash", sa.String(64)), sa.Column("dup_group", sa.Integer), sa.Column("split", sa.String(8)),
    sa.Column("created_at", sa.String(32)),
)
legacy_manual_faces_table = sa.Table(
    "manual_faces", legacy_metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    *(sa.Column(name, sa.Float) for name in FACE_COLUMNS[:5]), sa.Column("landmarks", sa.Text),
    sa.Column("created_at", sa.String(32)),
)


def faces_from_images(images: list[dict], manual_faces: list[dict]) -> dict[str, list[dict]]:
    """The photos, faces and manual_boxes rows of schema 5's images and manual_faces rows: an image is a photo with one
    face, both with the image's id (a run's predictions.csv names faces by it), and its box set by hand stays its
    own."""
    manual = {row["sha256"]: row for row in manual_faces}
    return {
        "photos": [{name: row[name] for name in photos_table.columns.keys()} for row in images],
        "faces": [{"id": row["id"], "photo_id": row["id"], "label_id": row["label_id"],
                   **{name: row[name] for name in FACE_COLUMNS}, "source": "detected", "created_at": row["created_at"]}
                  for row in images],
        "manual_boxes": [{"face_id": row["id"], **{name: manual[row["sha256"]][name]
                                                   for name in (*FACE_COLUMNS, "created_at")}}
                         for row in images if row["sha256"] in manual]}


def insert_rows(conn, table: sa.Table, rows: list[dict]) -> None:
    """Insert rows, given with their ids, 500 at a time."""
    for start in range(0, len(rows), 500):
        conn.execute(table.insert(), rows[start:start + 500])


def continue_ids(conn, tables) -> None:
    """After rows were inserted with their ids: PostgreSQL's id sequences continue after the highest (SQLite's do)."""
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                 f"COALESCE(MAX(id), 0) + 1, false) FROM {table.name}"))


def _upgrade(conn, version: int) -> None:
    """Bring a data home written by an older maskdet to SCHEMA_VERSION (its data stays as it was, except that of
    several queued or running runs, which older versions allowed, only the newest stays so: the others fail). New
    tables were made by create_all before."""
    inspector = sa.inspect(conn)
    columns = {("runs", "heartbeat_at", "VARCHAR(32)")} | ({("images", "landmarks", "TEXT")} if version < 6 else set())
    for table, column, kind in sorted(columns):
        if column not in {existing["name"] for existing in inspector.get_columns(table)}:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    if version < 4:
        newest_first = list(conn.execute(sa.select(runs_table.c.id).where(runs_table.c.status.in_(ACTIVE_STATUSES))
                                         .order_by(runs_table.c.created_at.desc(), runs_table.c.id.desc())).scalars())
        if len(newest_first) > 1:
            conn.execute(runs_table.update().where(runs_table.c.id.in_(newest_first[1:])).values(
                status="failed", finished_at=now(), error="Failed when maskdet moved to one training at a time: the "
                                                          f"newer run {newest_first[0]} stayed active."))
        one_active_run.create(conn)
    if version < 6:
        legacy = [legacy_images_table] + ([legacy_manual_faces_table] if inspector.has_table("manual_faces") else [])
        read = {table.name: [dict(row) for row in conn.execute(sa.select(table)).mappings()] for table in legacy}
        for table_name, rows in faces_from_images(read["images"], read.get("manual_faces", [])).items():
            insert_rows(conn, metadata.tables[table_name], rows)
        continue_ids(conn, (photos_table, faces_table))
        for table in reversed(legacy):
            conn.execute(sa.text(f"DROP TABLE {table.name}"))
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


def integrity_problems(engine: sa.Engine) -> list[str]:
    """What is wrong with the database, one sentence each (none: it is intact): SQLite's own integrity check, then on
    both backends every table read through and no row whose foreign key leads to no row."""
    problems = []
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                problems += [f"SQLite's integrity check says: {line}"
                             for line in conn.exec_driver_sql("PRAGMA integrity_check").scalars() if line != "ok"]
            for table in metadata.sorted_tables:
                conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                for key in table.foreign_keys:
                    orphans = conn.execute(sa.select(sa.func.count()).select_from(
                        table.outerjoin(key.column.table, key.parent == key.column)).where(
                        key.parent.is_not(None), key.column.is_(None))).scalar()
                    if orphans:
                        problems.append(f"{orphans} {table.name} rows name a {key.column.table.name} row that is not "
                                        f"there ({key.parent.name}).")
    except sa.exc.DatabaseError as error:
        problems.append(f"The database cannot be read ({str(error.orig).strip().splitlines()[0]}).")
    return problems


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
