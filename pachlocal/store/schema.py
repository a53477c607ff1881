"""The metadata database's tables, and the migrations from older state directories."""

from __future__ import annotations

SCHEMA_VERSION = 2
#: Statements taking schema N to N + 1.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE pipelines ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE pipeline_versions ADD COLUMN spec_commit TEXT NOT NULL DEFAULT ''",
    ),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repos (
    name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, kind TEXT NOT NULL DEFAULT 'user');
CREATE TABLE IF NOT EXISTS branches (
    repo TEXT NOT NULL, name TEXT NOT NULL, head TEXT,
    trigger TEXT, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS commit_sets (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, created REAL NOT NULL,
    logical_time TEXT NOT NULL, cause TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (
    repo TEXT NOT NULL, id TEXT NOT NULL, branch TEXT NOT NULL, parent TEXT,
    origin TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL, finished REAL, size INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '', manifest TEXT, provenance TEXT NOT NULL DEFAULT '{}',
    seq INTEGER NOT NULL, PRIMARY KEY (repo, id));
CREATE INDEX IF NOT EXISTS commits_by_id ON commits (id);
CREATE TABLE IF NOT EXISTS staging (
    repo TEXT NOT NULL, commit_id TEXT NOT NULL, path TEXT NOT NULL,
    hash TEXT, size INTEGER NOT NULL, PRIMARY KEY (repo, commit_id, path));
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, fingerprint TEXT NOT NULL,
    version INTEGER NOT NULL, salt TEXT NOT NULL, code_root TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, stopped INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pipeline_versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL,
    fingerprint TEXT NOT NULL, salt TEXT NOT NULL, created REAL NOT NULL,
    spec_commit TEXT NOT NULL DEFAULT '', PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS jobs (
    pipeline TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
    inputs TEXT NOT NULL, spec_version INTEGER NOT NULL, code TEXT NOT NULL DEFAULT '{}',
    total INTEGER NOT NULL DEFAULT 0, processed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (pipeline, id));
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS datums (
    pipeline TEXT NOT NULL, job TEXT NOT NULL, datum TEXT NOT NULL,
    hash TEXT NOT NULL, state TEXT NOT NULL, inputs TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (pipeline, job, datum));
"""
