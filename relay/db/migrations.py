"""Schema migrations for SQLite and PostgreSQL, applied in order, each exactly once.

Each migration is DDL written once with ``{blob}`` and ``{bigint}`` for the types that differ.
Applied versions are recorded in ``schema_migrations``; a relay refuses to start on a database
newer than it knows. On PostgreSQL many replicas may start at once, so the implementation runs
the migrations under an advisory lock.
"""

from __future__ import annotations

from relay.db.base import DatabaseError, Dialect, Tx

TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"blob": "BLOB", "bigint": "INTEGER"},
    "postgres": {"blob": "BYTEA", "bigint": "BIGINT"},
}

# Identifiers (user, device, share ids) are printable text; hashes, keys and bodies are bytes.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            user_key {blob} NOT NULL,
            created_ms {bigint} NOT NULL,
            recovery_blob {blob},
            quota_bytes {bigint} NOT NULL,
            used_bytes {bigint} NOT NULL DEFAULT 0
        );
        CREATE TABLE invites (
            code_hash {blob} PRIMARY KEY,
            created_ms {bigint} NOT NULL,
            used_by TEXT
        );
        CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(user_id),
            device_key {blob} NOT NULL,
            certificate {blob} NOT NULL,
            created_ms {bigint} NOT NULL
        );
        CREATE INDEX devices_by_user ON devices(user_id);
        CREATE TABLE revocations (
            device_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(user_id),
            statement {blob} NOT NULL,
            revoked_ms {bigint} NOT NULL
        );
        CREATE TABLE auth_nonces (
            nonce {blob} PRIMARY KEY,
            expires_ms {bigint} NOT NULL
        );
        CREATE INDEX auth_nonces_by_expiry ON auth_nonces(expires_ms);
        CREATE TABLE shares (
            share_id TEXT PRIMARY KEY,
            owner_user_id TEXT NOT NULL REFERENCES users(user_id),
            created_ms {bigint} NOT NULL,
            chain_height {bigint} NOT NULL,
            chain_head {blob} NOT NULL,
            last_seq {bigint} NOT NULL DEFAULT 0
        );
        CREATE TABLE chain_entries (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            height {bigint} NOT NULL,
            entry_hash {blob} NOT NULL,
            entry {blob} NOT NULL,
            PRIMARY KEY (share_id, height)
        );
        CREATE TABLE members (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            PRIMARY KEY (share_id, user_id)
        );
        CREATE INDEX members_by_user ON members(user_id);
        CREATE TABLE device_cutoffs (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            device_id TEXT NOT NULL,
            cutoff_counter {bigint} NOT NULL,
            PRIMARY KEY (share_id, device_id)
        );
        CREATE TABLE envelopes (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            seq {bigint} NOT NULL,
            device_id TEXT NOT NULL,
            counter {bigint} NOT NULL,
            envelope_hash {blob} NOT NULL,
            body {blob} NOT NULL,
            received_ms {bigint} NOT NULL,
            PRIMARY KEY (share_id, seq),
            UNIQUE (share_id, device_id, counter)
        );
        CREATE TABLE share_vectors (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            device_id TEXT NOT NULL,
            counter {bigint} NOT NULL,
            last_hash {blob} NOT NULL,
            PRIMARY KEY (share_id, device_id)
        );
        CREATE TABLE share_blocks (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            block_id {blob} NOT NULL,
            size {bigint} NOT NULL,
            PRIMARY KEY (share_id, block_id)
        );
        CREATE TABLE owed_blocks (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            block_id {blob} NOT NULL,
            first_seq {bigint} NOT NULL,
            PRIMARY KEY (share_id, block_id)
        );
        CREATE TABLE write_windows (
            user_id TEXT NOT NULL,
            window_start_ms {bigint} NOT NULL,
            writes {bigint} NOT NULL,
            PRIMARY KEY (user_id, window_start_ms)
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE key_wraps (
            share_id TEXT NOT NULL REFERENCES shares(share_id),
            recipient TEXT NOT NULL,
            epoch {bigint} NOT NULL,
            sender TEXT NOT NULL,
            wrap {blob} NOT NULL,
            stored_ms {bigint} NOT NULL,
            PRIMARY KEY (share_id, recipient, epoch)
        );
        """,
    ),
    (
        3,
        """
        CREATE TABLE recovery_keys (
            verify_key {blob} PRIMARY KEY,
            user_id TEXT NOT NULL UNIQUE REFERENCES users(user_id)
        );
        """,
    ),
    (
        4,
        # Device-linking rendezvous (relay.linking): short-lived, pruned once expired.
        """
        CREATE TABLE link_rendezvous (
            rendezvous {blob} PRIMARY KEY,
            opener TEXT NOT NULL,
            expires_ms {bigint} NOT NULL,
            request {blob},
            answer {blob},
            refused TEXT
        );
        CREATE INDEX link_rendezvous_by_opener ON link_rendezvous(opener);
        CREATE INDEX link_rendezvous_by_expiry ON link_rendezvous(expires_ms);
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]


def statements(dialect: Dialect, ddl: str) -> list[str]:
    text = ddl.format(**TYPES[dialect])
    return [s.strip() for s in text.split(";") if s.strip()]


async def migrate(tx: Tx, dialect: Dialect) -> int:
    """Apply every migration newer than the database's version; the version reached."""
    await tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        f"applied_ms {TYPES[dialect]['bigint']} NOT NULL)"
    )
    row = await tx.fetchone("SELECT MAX(version) FROM schema_migrations")
    current = int(row[0]) if row and row[0] is not None else 0  # type: ignore[arg-type]
    if current > LATEST:
        raise DatabaseError(
            f"the database is at schema version {current}, newer than this relay ({LATEST}): "
            "upgrade the relay"
        )
    for version, ddl in MIGRATIONS:
        if version <= current:
            continue
        for stmt in statements(dialect, ddl):
            await tx.execute(stmt)
        await tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, 0)", version
        )
    return LATEST
