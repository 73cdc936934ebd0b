"""The HTTP side: the Quart-Trio app (REST, docs, web client) and the /ws session."""
