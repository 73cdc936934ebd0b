"""What holds data: the SQL database (models, queries, migrations) and the room streams."""
