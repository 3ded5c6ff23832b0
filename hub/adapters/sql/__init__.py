"""The SQL ledger, failed-message store and endpoint switches (SQLAlchemy Core over SQLite or
PostgreSQL): engine, tables, rows, ledger. The only package that imports SQLAlchemy/psycopg."""
