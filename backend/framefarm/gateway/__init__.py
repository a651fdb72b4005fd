"""The Framefarm gateway: a stateless Flask app; all farm state lives in Redis."""
