"""The DuckDB warehouse: schema migrations, connections and the synthetic demo population."""
