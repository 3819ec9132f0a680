"""The DuckDB warehouse: schema and migrations, loads, views and queries.

Every SQL statement of the project lives in this package, and only
`warehouse.connection.connect` opens a connection. Functions take an open
connection first and bind every value as a parameter. No Prefect here.
"""
