"""The DuckDB warehouse: schema migrations, connections and validated loading."""
