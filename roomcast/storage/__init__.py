"""What holds data: the SQL database (models, queries, migrations), the room streams and presence."""
