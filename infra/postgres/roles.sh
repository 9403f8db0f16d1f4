#!/bin/sh
# First start of the postgres container (docker-entrypoint-initdb.d): the role
# Wake's services connect as. It owns the schemas it creates in database `wake`
# (the projector's, `wake replay --into`'s) and nothing else: not a superuser,
# no CREATEROLE, no CREATEDB, so no `COPY ... TO PROGRAM`. Its password is the
# secret file the services read too; none appears in docker-compose.yml.
# The same role as services/wiring/embedded_postgres.py makes for `wake up`.
set -eu
# And the console's (service `api`) role, wake_reader: it may read what `wake` creates,
# now and later, and nothing else.
password="$(cat /run/secrets/postgres-wake-password)"
reader_password="$(cat /run/secrets/postgres-reader-password)"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=password="$password" --set=reader_password="$reader_password" <<'SQL'
CREATE ROLE wake LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'password';
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE wake TO wake;
CREATE ROLE wake_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE wake TO wake_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE wake GRANT USAGE ON SCHEMAS TO wake_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE wake GRANT SELECT ON TABLES TO wake_reader;
SQL
