"""Who is calling: password hashes, JWTs, and who may contact whom."""
