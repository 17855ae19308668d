"""Backend clients: each module owns its pool in a cleanup context, a small facade and a health check."""
