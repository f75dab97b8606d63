"""Target: segment rules as files. Every ``rules/*.sql`` is a segment named by its file."""
