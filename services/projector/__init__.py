"""The projector: the log folded into PostgreSQL read models (DESIGN §3).

Pure core: `folding` (event + rows -> rows) and `journeys` (rows -> what
`wake history` and `wake state` show). Shell: `store` (the SQL and the
migrations in infra/postgres), `service` (the live projector) and
`replaying` (`wake replay`, its `--verify`, and `wake state --at`).
"""
