"""The DuckDB warehouse: schema and migrations, loads, views and queries.

Every SQL statement of the project lives in this package, and only this
package opens connections: `warehouse.connection.connect` for a file or a
lake (DuckDB), and the lake modules their own to its PostgreSQL. Functions
take an open connection first and bind every value as a parameter. No
Prefect here.
"""
