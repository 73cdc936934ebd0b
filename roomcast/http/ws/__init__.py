"""The /ws endpoint: WebSocket connections below Quart, one session per connection."""
