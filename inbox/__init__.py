"""The inbox: where replies, delivery events and managers' changes land (SQLite or PostgreSQL), and
its migrations.
"""
