"""The console: Wake's REST API, web UI and trace viewer (`wake run api`).

It reads the projector's read models in PostgreSQL and appends commands to the
log; it never writes a read model. `access.py` is its pure core (tokens, roles,
the login rate limit); `queries.py` its reads; `rest.py` the JSON API;
`pages.py` the HTML; `service.py` the shell.
"""
